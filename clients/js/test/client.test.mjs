// The client's connection logic against a scripted fake WebSocket (no network):
// auth, heartbeat answers, reconnect policy, re-auth, resubscribe and log resume.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { OpenPanelClient, OpenPanelError } from '../openpanel-ws.js'

class FakeSocket {
  static all = []
  constructor(url) {
    this.url = url
    this.sent = []
    this.closedWith = null
    FakeSocket.all.push(this)
  }

  send(data) {
    this.sent.push(JSON.parse(data))
  }
  close(code) {
    this.closedWith = code ?? 1000
  }
  // what the server does
  push(msg) {
    this.onmessage({ data: JSON.stringify(msg) })
  }
  drop(code, reason = '') {
    this.onclose({ code, reason })
  }
  welcome() {
    this.push({ type: 'connected', clientId: 'c', timestamp: new Date().toISOString(), message: 'hi' })
  }
  types() {
    return this.sent.map(m => m.type)
  }
}

const tick = () => new Promise(resolve => setTimeout(resolve, 5))

function client(extra = {}) {
  FakeSocket.all = []
  let tokens = 0
  const c = new OpenPanelClient({
    url: 'ws://gw:1',
    getToken: async () => `token-${++tokens}`,
    WebSocket: FakeSocket,
    backoff: { random: () => 0 }, // reconnect at once
    ...extra
  })
  return c
}

async function authenticate(ws) {
  ws.welcome()
  await tick()
  assert.equal(ws.sent.at(-1).type, 'auth')
  ws.push({ type: 'authenticated', clientId: 'c', userId: 'u', timestamp: new Date().toISOString() })
}

test('lazy connection, auth with getToken, then the subscription; pings answered with pong', async () => {
  const c = client()
  const states = []
  c.addEventListener('state', e => states.push(e.detail.state))
  assert.equal(FakeSocket.all.length, 0)
  const lines = []
  const sub = c.subscribeLogs('web', { tail: 5 }, l => lines.push(l.data))
  const ws = FakeSocket.all[0]
  assert.equal(ws.url, 'ws://gw:1/ws/containers')
  await authenticate(ws)
  assert.deepEqual(ws.sent[0], { type: 'auth', token: 'token-1' })
  assert.deepEqual(ws.sent[1], { type: 'subscribe_logs', containerId: 'web', tail: 5 })
  ws.push({ type: 'ping', timestamp: '2026-01-01T00:00:00Z' })
  assert.equal(ws.sent.at(-1).type, 'pong')
  ws.push({ type: 'log', containerId: 'web', timestamp: '2026-01-01T00:00:00.1Z', stream: 'stdout', data: 'one' })
  assert.deepEqual(lines, ['one'])
  assert.deepEqual(states, ['connecting', 'authenticated'])
  sub.unsubscribe()
  assert.equal(ws.closedWith, 1000) // last consumer gone: connection closed
  assert.deepEqual(states, ['connecting', 'authenticated', 'closed'])
})

test('after 1006 / 1013 / 1001: reconnect, fresh token, resume logs with since and drop duplicates', async () => {
  const c = client()
  const lines = []
  c.subscribeLogs('web', {}, l => lines.push(l.data))
  c.subscribeStats('web', { interval: 1000 }, () => {})
  await authenticate(FakeSocket.all[0])
  const line = (ts, data) => ({ type: 'log', containerId: 'web', timestamp: ts, stream: 'stdout', data })
  FakeSocket.all[0].push(line('2026-01-01T00:00:01.5Z', 'a'))
  FakeSocket.all[0].push(line('2026-01-01T00:00:02Z', 'b'))
  let n = 0
  for (const code of [1006, 1013, 1001]) {
    FakeSocket.all.at(-1).drop(code)
    await tick()
    const ws = FakeSocket.all.at(-1)
    assert.equal(FakeSocket.all.length, 2 + n++, `reconnected after ${code}`)
    await authenticate(ws)
    assert.equal(ws.sent[0].token, `token-${n + 1}`) // getToken called again
    const sub = ws.sent.find(m => m.type === 'subscribe_logs')
    assert.deepEqual(sub, {
      type: 'subscribe_logs',
      containerId: 'web',
      since: '2026-01-01T00:00:01.000000000Z',
      tail: 'all'
    })
    assert.deepEqual(
      ws.sent.find(m => m.type === 'subscribe_stats'),
      { type: 'subscribe_stats', containerId: 'web', interval: 1000 }
    )
    ws.push(line('2026-01-01T00:00:01.5Z', 'a')) // replayed: dropped
    ws.push(line('2026-01-01T00:00:02Z', 'b'))
  }
  FakeSocket.all.at(-1).push(line('2026-01-01T00:00:03Z', 'c'))
  assert.deepEqual(lines, ['a', 'b', 'c'])
  c.close()
})

test('4001 is final: the subscriber gets AUTH_FAILED and nothing reconnects', async () => {
  const c = client()
  const errors = []
  c.subscribeMetrics(
    { interval: 2000 },
    () => {},
    e => errors.push(e)
  )
  const ws = FakeSocket.all[0]
  ws.welcome()
  await tick()
  ws.push({ type: 'error', code: 'AUTH_FAILED', message: 'Invalid token' })
  ws.drop(4001, 'Invalid token')
  await tick()
  assert.equal(FakeSocket.all.length, 1)
  assert.equal(errors.length, 1)
  assert.ok(errors[0] instanceof OpenPanelError)
  assert.equal(errors[0].code, 'AUTH_FAILED')
  assert.equal(errors[0].closeCode, 4001)
})

test('a container error ends only that subscription, through its onError', async () => {
  const c = client()
  const errs = []
  c.subscribeLogs(
    'gone',
    {},
    () => {},
    e => errs.push(e)
  )
  const other = []
  c.subscribeLogs('web', {}, l => other.push(l.data))
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  ws.push({ type: 'error', code: 'CONTAINER_NOT_FOUND', message: 'Container not found', containerId: 'gone' })
  assert.equal(errs[0].code, 'CONTAINER_NOT_FOUND')
  assert.equal(errs[0].containerId, 'gone')
  ws.drop(1006)
  await tick()
  const again = FakeSocket.all.at(-1)
  await authenticate(again)
  assert.deepEqual(
    again.sent.filter(m => m.type === 'subscribe_logs').map(m => m.containerId),
    ['web']
  )
  c.close()
})

test('a refused tail/interval/filter ends that subscription instead of waiting', async () => {
  const c = client()
  const errs = []
  c.subscribeLogs(
    'web',
    { tail: -1 },
    () => {},
    e => errs.push(['logs', e.code])
  )
  c.subscribeStats(
    'web',
    { interval: 5 },
    () => {},
    e => errs.push(['stats', e.code])
  )
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  ws.push({ type: 'error', code: 'INVALID_MESSAGE', message: "Field 'tail' ...", field: 'tail' })
  ws.push({ type: 'error', code: 'INVALID_MESSAGE', message: "Field 'interval' ...", field: 'interval' })
  assert.deepEqual(errs, [
    ['logs', 'INVALID_MESSAGE'],
    ['stats', 'INVALID_MESSAGE']
  ])
  assert.equal(ws.closedWith, 1000) // nothing left on that connection
  const events = []
  const evErrs = []
  c.subscribeEvents(
    { filters: { colour: ['red'] } },
    m => events.push(m),
    e => evErrs.push(e.code)
  )
  const logs = FakeSocket.all.at(-1)
  await authenticate(logs)
  assert.deepEqual(logs.sent[1], { type: 'subscribe', filters: { colour: ['red'] } })
  logs.push({
    type: 'docker_event',
    timestamp: '2026-01-01T00:00:00Z',
    event: { Type: 'container', Action: 'start', Actor: { ID: 'x' } }
  })
  assert.equal(events.length, 0) // not before the server accepted the filters
  logs.push({ type: 'error', code: 'INVALID_MESSAGE', message: 'unknown filter', field: 'filters.colour' })
  assert.deepEqual(evErrs, ['INVALID_MESSAGE'])
  c.close()
})

test('events resume with since after a reconnect', async () => {
  const c = client()
  const got = []
  c.subscribeEvents({}, m => got.push(m.event?.Action ?? m.message))
  const ws = FakeSocket.all[0]
  assert.equal(ws.url, 'ws://gw:1/ws/logs')
  await authenticate(ws)
  assert.deepEqual(ws.types(), ['auth']) // everything by default: nothing to send
  const ev = (ts, action) => ({
    type: 'docker_event',
    timestamp: ts,
    event: { Type: 'container', Action: action, Actor: { ID: 'x' }, timeNano: ts }
  })
  ws.push(ev('2026-01-01T00:00:10Z', 'start'))
  ws.drop(1006)
  await tick()
  const again = FakeSocket.all.at(-1)
  await authenticate(again)
  assert.deepEqual(again.sent[1], { type: 'subscribe', since: '2026-01-01T00:00:08.000000000Z' })
  again.push({ type: 'subscribed', filters: {}, since: again.sent[1].since, replayed: 2 })
  again.push(ev('2026-01-01T00:00:10Z', 'start')) // replay of one already seen
  again.push(ev('2026-01-01T00:00:11Z', 'die'))
  assert.deepEqual(got, ['start', 'die'])
  c.close()
})

test('terminal: input written before it opened is sent after, then coalesced under the limit', async () => {
  const c = client()
  const term = c.openTerminal('web', { shell: '/bin/sh', cols: 100, rows: 30 })
  const seen = []
  for (const t of ['opened', 'output', 'closed']) term.addEventListener(t, e => seen.push([t, e.detail]))
  term.write('early\n')
  const ws = FakeSocket.all[0]
  assert.equal(ws.url, 'ws://gw:1/ws/terminal')
  await authenticate(ws)
  assert.deepEqual(ws.sent[1], { type: 'open_terminal', containerId: 'web', shell: '/bin/sh', cols: 100, rows: 30 })
  ws.push({ type: 'terminal_opened', containerId: 'web', sessionId: 's-1' })
  assert.deepEqual(ws.sent[2], { type: 'input', data: 'early\n' })
  for (let i = 0; i < 100; i++) term.write('k')
  const sentNow = ws.sent.filter(m => m.type === 'input').length
  assert.ok(sentNow <= 10, `at most the bucket goes out at once (${sentNow})`)
  ws.push({ type: 'terminal_output', data: 'hello' })
  ws.push({ type: 'terminal_closed', reason: 'Process exited', exitCode: 0 })
  assert.deepEqual(seen, [
    ['opened', { sessionId: 's-1', containerId: 'web' }],
    ['output', { data: 'hello' }],
    ['closed', { reason: 'Process exited', exitCode: 0 }]
  ])
  c.close()
})

test('a gateway shutdown (1001) ends a terminal at once: CONNECTION_LOST, then closed', async () => {
  const c = client()
  const term = c.openTerminal('web')
  const events = []
  term.addEventListener('error', e => events.push(e.detail.code))
  term.addEventListener('closed', () => events.push('closed'))
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  ws.push({ type: 'terminal_opened', containerId: 'web', sessionId: 's-1' })
  ws.drop(1001, 'server shutdown')
  await tick()
  assert.deepEqual(events, ['CONNECTION_LOST', 'closed'])
  assert.equal(FakeSocket.all.length, 1)
  c.close()
})

test('a dropped terminal connection is reconnected and the session reattached after the last seq', async () => {
  const c = client()
  const term = c.openTerminal('web')
  const events = []
  for (const t of ['resuming', 'resumed', 'output', 'closed', 'error']) {
    term.addEventListener(t, e => events.push([t, t === 'error' ? e.detail.code : e.detail]))
  }
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  ws.push({ type: 'terminal_opened', containerId: 'web', sessionId: 's-1' })
  ws.push({ type: 'terminal_output', data: 'abc', seq: 3 })
  ws.drop(1006)
  term.write('typed meanwhile') // sent after the resume
  await tick()
  const again = FakeSocket.all.at(-1)
  assert.equal(FakeSocket.all.length, 2)
  await authenticate(again)
  assert.deepEqual(again.sent[1], { type: 'open_terminal', containerId: 'web', sessionId: 's-1', lastSeq: 3 })
  assert.ok(!again.sent.some(m => m.type === 'input')) // not before the session is back
  again.push({ type: 'terminal_opened', containerId: 'web', sessionId: 's-1', resumed: true, seq: 3 })
  assert.deepEqual(again.sent.at(-1), { type: 'input', data: 'typed meanwhile' })
  again.push({ type: 'terminal_output', data: 'def', seq: 6 })
  term.write('x')
  assert.deepEqual(again.sent.at(-1), { type: 'input', data: 'x' })
  assert.deepEqual(events, [
    ['output', { data: 'abc' }],
    ['resuming', { closeCode: 1006 }],
    ['resumed', { sessionId: 's-1', lostBytes: 0 }],
    ['output', { data: 'def' }]
  ])
  c.close()
})

test('a session that did not survive the reconnect ends the terminal', async () => {
  for (const answer of [
    { type: 'terminal_error', message: 'Terminal session not found or expired' },
    { type: 'terminal_opened', containerId: 'web', sessionId: 's-2' } // a gateway without sessions
  ]) {
    const c = client()
    const term = c.openTerminal('web')
    const events = []
    term.addEventListener('error', e => events.push(e.detail.code))
    term.addEventListener('closed', () => events.push('closed'))
    await authenticate(FakeSocket.all[0])
    FakeSocket.all[0].push({ type: 'terminal_opened', containerId: 'web', sessionId: 's-1' })
    FakeSocket.all[0].drop(1006)
    await tick()
    const again = FakeSocket.all.at(-1)
    await authenticate(again)
    again.push(answer)
    assert.deepEqual(events, ['CONNECTION_LOST', 'closed'], JSON.stringify(answer))
    if (answer.type === 'terminal_opened') assert.equal(again.sent.at(-1).type, 'close_terminal')
    c.close()
  }
})

test('an error without a close event (Node 20, refused connection) still reconnects', async () => {
  const c = client()
  c.subscribeMetrics({}, () => {})
  const ws = FakeSocket.all[0]
  ws.readyState = 0
  ws.onerror({})
  await tick()
  await tick()
  assert.equal(FakeSocket.all.length, 2)
  c.close()
})

test('the public API of JS-CLIENT-CONTRACT: methods, events, error fields', () => {
  const c = client()
  for (const m of ['subscribeLogs', 'subscribeStats', 'subscribeMetrics', 'subscribeEvents', 'openTerminal', 'close']) {
    assert.equal(typeof c[m], 'function', m)
  }
  assert.ok(c instanceof EventTarget)
  const sub = c.subscribeStats(
    'web',
    { interval: 2000 },
    () => {},
    () => {}
  )
  assert.equal(typeof sub.unsubscribe, 'function')
  const term = c.openTerminal('web', { shell: '/bin/sh', cols: 80, rows: 24 })
  assert.ok(term instanceof EventTarget)
  for (const m of ['write', 'resize', 'close']) assert.equal(typeof term[m], 'function', m)
  const err = new OpenPanelError('X', 'y', { containerId: 'c', closeCode: 4001 })
  assert.deepEqual([err.code, err.message, err.containerId, err.closeCode], ['X', 'y', 'c', 4001])
  c.close()
  assert.throws(
    () => c.subscribeMetrics({}, () => {}),
    e => e.code === 'CLIENT_CLOSED'
  )
})

test('with getToken, the open connection re-authenticates before the token expires', async () => {
  const b64 = o => Buffer.from(JSON.stringify(o)).toString('base64url')
  let n = 0
  const c = new OpenPanelClient({
    url: 'ws://gw:1',
    WebSocket: FakeSocket,
    getToken: () => `${b64({ alg: 'HS256' })}.${b64({ sub: 'u', exp: Date.now() / 1000 + 1.5, n: ++n })}.s`
  })
  FakeSocket.all = []
  c.subscribeMetrics({}, () => {})
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  const deadline = Date.now() + 5000
  while (ws.sent.filter(m => m.type === 'auth').length < 2 && Date.now() < deadline) await tick()
  const auths = ws.sent.filter(m => m.type === 'auth')
  assert.equal(auths.length, 2, 'a second auth on the same connection')
  assert.notEqual(auths[0].token, auths[1].token)
  assert.equal(FakeSocket.all.length, 1)
  c.close()
})

test('a server that goes silent past idleTimeout is treated as gone, and reconnected', async () => {
  const c = client({ idleTimeout: 30 })
  c.subscribeMetrics({}, () => {})
  await authenticate(FakeSocket.all[0])
  const deadline = Date.now() + 5000
  while (FakeSocket.all.length < 2 && Date.now() < deadline) await tick()
  assert.equal(FakeSocket.all.length, 2)
  assert.equal(FakeSocket.all[0].closedWith, 4000)
  c.close()
})

test('no WebSocket constructor: a typed error that says what to do', () => {
  const saved = globalThis.WebSocket
  globalThis.WebSocket = undefined
  try {
    assert.throws(
      () => new OpenPanelClient({ url: 'ws://x' }),
      e => e.code === 'NO_WEBSOCKET'
    )
  } finally {
    globalThis.WebSocket = saved
  }
})

test('a state listener that closes the client leaves no timer behind', async () => {
  const c = client()
  c.subscribeMetrics({}, () => {})
  const link = [...c.links.values()][0]
  await authenticate(FakeSocket.all[0])
  c.addEventListener('state', e => {
    if (e.detail.state === 'reconnecting') c.close()
  })
  FakeSocket.all[0].drop(1006)
  assert.equal(link.closed, true)
  assert.equal(link.timers.size, 0) // the retry decided before the close is not armed
  await tick()
  assert.equal(FakeSocket.all.length, 1)
})
