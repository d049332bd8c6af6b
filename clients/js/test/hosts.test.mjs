// Several Docker hosts behind one gateway (docs/protocol.md "Hosts"), against a scripted
// fake WebSocket: the host option, subscriptions keyed by (host, container), the host
// kept across a resume, `host` on what is delivered, host routes.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { apiUrl, gatewayUrl, OpenPanelClient } from '../openpanel-ws.js'

class FakeSocket {
  static all = []
  constructor(url) {
    this.url = url
    this.sent = []
    FakeSocket.all.push(this)
  }
  send(data) {
    this.sent.push(JSON.parse(data))
  }
  close(code) {
    this.closedWith = code ?? 1000
  }
  push(msg) {
    this.onmessage({ data: JSON.stringify(msg) })
  }
  drop(code) {
    this.onclose({ code, reason: '' })
  }
}

const tick = () => new Promise(resolve => setTimeout(resolve, 5))

function client(extra = {}) {
  FakeSocket.all = []
  return new OpenPanelClient({
    url: 'ws://gw:1',
    token: 't',
    WebSocket: FakeSocket,
    backoff: { random: () => 0 },
    ...extra
  })
}

async function authenticate(ws) {
  ws.push({ type: 'connected', clientId: 'c', timestamp: new Date().toISOString() })
  await tick()
  ws.push({ type: 'authenticated', clientId: 'c', userId: 'u', timestamp: new Date().toISOString() })
}

const line = (host, ts, data) => ({ type: 'log', containerId: 'web', host, timestamp: ts, stream: 'stdout', data })

test('the same container on two hosts is two subscriptions, each with its own lines and errors', async () => {
  const c = client()
  const a = []
  const b = []
  const errors = []
  c.subscribeLogs(
    'web',
    { host: 'a' },
    l => a.push(l),
    e => errors.push(['a', e.code])
  )
  const subB = c.subscribeLogs(
    'web',
    { host: 'b' },
    l => b.push(l),
    e => errors.push(['b', e.code])
  )
  assert.equal(subB.host, 'b')
  const ws = FakeSocket.all[0]
  assert.equal(FakeSocket.all.length, 1) // one /ws/containers connection for every host
  await authenticate(ws)
  assert.deepEqual(ws.sent.slice(1), [
    { type: 'subscribe_logs', containerId: 'web', host: 'a' },
    { type: 'subscribe_logs', containerId: 'web', host: 'b' }
  ])
  ws.push(line('b', '2026-01-01T00:00:01Z', 'from b'))
  ws.push(line('a', '2026-01-01T00:00:01Z', 'from a'))
  assert.deepEqual(a, [
    { containerId: 'web', host: 'a', timestamp: '2026-01-01T00:00:01Z', stream: 'stdout', data: 'from a' }
  ])
  assert.deepEqual(
    b.map(l => l.data),
    ['from b']
  )
  ws.push({ type: 'error', code: 'CONTAINER_NOT_FOUND', message: 'Container not found', containerId: 'web', host: 'b' })
  assert.deepEqual(errors, [['b', 'CONTAINER_NOT_FOUND']])
  ws.push(line('b', '2026-01-01T00:00:02Z', 'too late'))
  assert.equal(b.length, 1)
  c.close()
})

test('unsubscribing one host keeps the other host subscribed', async () => {
  const c = client()
  c.subscribeStats('web', { host: 'a' }, () => {})
  const sub = c.subscribeStats('web', { host: 'b' }, () => {})
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  sub.unsubscribe()
  assert.deepEqual(ws.sent.at(-1), { type: 'unsubscribe_stats', containerId: 'web', host: 'b' })
  c.close()
})

test('without a host the first answer names it; a resume asks the same host', async () => {
  const c = client()
  const lines = []
  c.subscribeLogs('web', {}, l => lines.push(l))
  await authenticate(FakeSocket.all[0])
  assert.deepEqual(FakeSocket.all[0].sent[1], { type: 'subscribe_logs', containerId: 'web' })
  FakeSocket.all[0].push({ type: 'subscribed_logs', containerId: 'web', host: 'local' })
  FakeSocket.all[0].push(line('local', '2026-01-01T00:00:02Z', 'x'))
  FakeSocket.all[0].push(line('other', '2026-01-01T00:00:03Z', 'not ours'))
  assert.deepEqual(
    lines.map(l => [l.host, l.data]),
    [['local', 'x']]
  )
  FakeSocket.all[0].drop(1006)
  await tick()
  const ws = FakeSocket.all.at(-1)
  await authenticate(ws)
  assert.deepEqual(ws.sent[1], {
    type: 'subscribe_logs',
    containerId: 'web',
    host: 'local',
    since: '2026-01-01T00:00:01.000000000Z',
    tail: 'all'
  })
  c.close()
})

test("the client's default host, a per-call host, and a terminal that resumes on its host", async () => {
  const c = client({ host: 'prod-2' })
  c.subscribeStats('web', {}, () => {})
  c.subscribeStats('db', { host: 'local' }, () => {})
  await authenticate(FakeSocket.all[0])
  assert.deepEqual(FakeSocket.all[0].sent.slice(1), [
    { type: 'subscribe_stats', containerId: 'web', host: 'prod-2' },
    { type: 'subscribe_stats', containerId: 'db', host: 'local' }
  ])
  const term = c.openTerminal('web')
  const tws = FakeSocket.all.at(-1)
  assert.equal(tws.url, 'ws://gw:1/ws/terminal')
  await authenticate(tws)
  assert.deepEqual(tws.sent[1], { type: 'open_terminal', containerId: 'web', host: 'prod-2' })
  tws.push({ type: 'terminal_opened', sessionId: 's1', containerId: 'web', host: 'prod-2' })
  tws.drop(1006)
  await tick()
  const again = FakeSocket.all.at(-1)
  await authenticate(again)
  assert.deepEqual(again.sent[1], { type: 'open_terminal', containerId: 'web', host: 'prod-2', sessionId: 's1' })
  assert.equal(term.host, 'prod-2')
  c.close()
})

test('events carry their host; host_status goes to subscribeHostStatus on the same connection', async () => {
  const c = client()
  const got = []
  const statuses = []
  c.subscribeEvents(m => got.push(m))
  c.subscribeHostStatus(m => statuses.push(m))
  assert.equal(FakeSocket.all.length, 1)
  const ws = FakeSocket.all[0]
  assert.equal(ws.url, 'ws://gw:1/ws/logs')
  await authenticate(ws)
  const down = { type: 'host_status', host: 'b', state: 'down', error: 'refused', timestamp: '2026-01-01T00:00:00Z' }
  ws.push(down)
  ws.push({
    type: 'docker_event',
    host: 'a',
    timestamp: '2026-01-01T00:00:01Z',
    event: { Type: 'container', Action: 'start', Actor: { ID: 'x', Attributes: {} }, timeNano: 1 }
  })
  assert.deepEqual(
    got.map(m => [m.type, m.host]),
    [['docker_event', 'a']]
  )
  assert.deepEqual(statuses, [down])
  c.close()
})

test('subscribeEvents passes host_status to its onHostStatus, on its own connection', async () => {
  const c = client()
  const statuses = []
  const events = []
  c.subscribeEvents({ since: '2026-01-01T00:00:00Z', onHostStatus: m => statuses.push(m.state) }, m => events.push(m))
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  ws.push({ type: 'subscribed' })
  ws.push({ type: 'host_status', host: 'b', state: 'connecting', timestamp: '2026-01-01T00:00:00Z' })
  assert.deepEqual(statuses, ['connecting'])
  assert.deepEqual(events, [])
  c.close()
})

test('a refused host ends the subscribe it answers; an error names its host', async () => {
  const c = client()
  const errors = []
  c.subscribeLogs(
    'web',
    { host: 'nope' },
    () => {},
    e => errors.push(e)
  )
  const ws = FakeSocket.all[0]
  await authenticate(ws)
  ws.push({ type: 'error', code: 'INVALID_MESSAGE', message: "Unknown host 'nope'", field: 'host' })
  assert.equal(errors.length, 1)
  assert.equal(errors[0].code, 'INVALID_MESSAGE')
  c.subscribeStats(
    'web',
    { host: 'x' },
    () => {},
    e => errors.push(e)
  )
  const next = FakeSocket.all.at(-1) // the first one ended: its connection was closed
  await authenticate(next)
  next.push({ type: 'error', code: 'PERMISSION_DENIED', message: 'Permission denied', containerId: 'web', host: 'x' })
  assert.equal(errors[1].host, 'x')
  c.close()
})

test('host routes and the API address', () => {
  assert.equal(gatewayUrl('ws://h:1', 'logs', 'prod-2'), 'ws://h:1/hosts/prod-2/ws/logs')
  assert.equal(gatewayUrl('ws://h:1/hosts/prod-2', 'terminal'), 'ws://h:1/hosts/prod-2/ws/terminal')
  assert.equal(apiUrl('ws://h:1/hosts/prod-2', '/api/hosts'), 'http://h:1/api/hosts')
  assert.equal(apiUrl('https://h', '/api/hosts'), 'https://h/api/hosts')
  const c = client({ hostRoute: 'prod-2' })
  c.subscribeMetrics({ host: 'prod-2' }, () => {})
  assert.equal(FakeSocket.all[0].url, 'ws://gw:1/hosts/prod-2/ws/metrics')
  c.close()
})

test('the same engine event on two hosts is two events, each once after a resume', async () => {
  const c = client()
  const got = []
  c.subscribeEvents({ since: '2026-01-01T00:00:00Z' }, m => got.push(m.host))
  await authenticate(FakeSocket.all[0])
  FakeSocket.all[0].push({ type: 'subscribed' })
  const event = host => ({
    type: 'docker_event',
    host,
    timestamp: '2026-01-01T00:00:01Z',
    event: { Type: 'container', Action: 'die', Actor: { ID: 'x', Attributes: {} }, timeNano: 1767225601000000000 }
  })
  FakeSocket.all[0].push(event('a'))
  FakeSocket.all[0].push(event('b'))
  FakeSocket.all[0].push(event('a')) // a replay
  assert.deepEqual(got, ['a', 'b'])
  c.close()
})
