// Unit tests of ClientConnection, the link's protocol decisions, with plain calls: no socket,
// no timers; the clock is a number passed in. `node --test clients/js/test/`.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { ClientConnection } from '../openpanel-ws.js'

const URL = 'ws://gw:1/ws/containers'
const WALL = Date.UTC(2026, 0, 1) // the connection's wall clock, unix ms

/** A consumer as the connection sees it. */
function consumer(subscribe = [], unsubscribe = []) {
  return { subscribeMessages: () => subscribe, unsubscribeMessages: () => unsubscribe }
}

function connection(extra = {}) {
  return new ClientConnection({
    url: URL,
    rateLimit: { count: 10, windowMs: 1000 },
    backoff: { random: () => 0.5 },
    wallClock: () => WALL,
    ...extra
  })
}

const kinds = actions => actions.map(a => a.kind)
const sent = actions => actions.filter(a => a.kind === 'send').map(a => JSON.parse(a.text))
const msg = m => JSON.stringify(m)
const jwt = claims => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`

/** Attach, welcome, token, authenticated: the actions of each step. */
function authenticated(m, c = consumer([{ type: 'subscribe_logs', containerId: 'web' }]), token = 't') {
  const opened = m.attach(c, 0)
  const gen = opened.at(-1).generation
  const welcome = m.received(gen, msg({ type: 'connected' }), 1)
  const auth = m.tokenReady(gen, token, 2)
  const ok = m.received(gen, msg({ type: 'authenticated', userId: 'u' }), 3)
  return { gen, opened, welcome, auth, ok, c }
}

test('the first consumer opens the socket; welcome asks for a token; the token is sent as auth', () => {
  const m = connection()
  const { gen, opened, welcome, auth, ok } = authenticated(m)
  assert.deepEqual(opened, [
    { kind: 'state', state: 'connecting' },
    { kind: 'open', url: URL, generation: 1 }
  ])
  assert.ok(Object.isFrozen(opened[1]))
  assert.equal(gen, 1)
  assert.deepEqual(kinds(welcome), ['clear-timer', 'fetch-token'])
  assert.deepEqual(sent(auth), [{ type: 'auth', token: 't' }])
  assert.deepEqual(kinds(ok), ['clear-timer', 'state', 'send'])
  assert.deepEqual(ok[1], { kind: 'state', state: 'authenticated' })
  assert.deepEqual(sent(ok), [{ type: 'subscribe_logs', containerId: 'web' }])
  assert.equal(m.userId, 'u')
  // A second `authenticated` (a token refresh) changes nothing else.
  assert.deepEqual(kinds(m.received(gen, msg({ type: 'authenticated', userId: 'u2' }), 4)), ['clear-timer'])
  assert.equal(m.userId, 'u2')
})

test('a consumer attached once authenticated subscribes at once, on the same socket', () => {
  const m = connection()
  authenticated(m)
  const more = m.attach(consumer([{ type: 'subscribe_stats', containerId: 'db' }]), 10)
  assert.deepEqual(kinds(more), ['send'])
  assert.deepEqual(sent(more), [{ type: 'subscribe_stats', containerId: 'db' }])
})

test('pings are answered with a pong ahead of the queue, even with no token left', () => {
  const m = connection({ rateLimit: { count: 2, windowMs: 1000 } }) // mirror: 1 token
  const { gen } = authenticated(m, consumer([]))
  const queued = m.send({ type: 'resize', cols: 1, rows: 1 }, 3) // no token: waits
  assert.deepEqual(kinds(queued), ['set-timer'])
  const pong = m.received(gen, msg({ type: 'ping', timestamp: 'x' }), 4)
  assert.deepEqual(sent(pong), []) // the pump timer is set: the pong leaves when it fires
  const fired = m.timerFired('pump', 5)
  assert.deepEqual(sent(fired)[0], { type: 'pong', timestamp: new Date(WALL).toISOString() })
})

test('outbox pacing: past the mirrored limit a send waits for the pump timer', () => {
  const m = connection({ rateLimit: { count: 3, windowMs: 1000 } }) // mirror: 2 tokens, 1 per 625 ms
  const { gen } = authenticated(m, consumer([])) // the auth took one
  assert.equal(gen, 1)
  assert.deepEqual(kinds(m.send({ type: 'a' }, 10)), ['send'])
  const waiting = m.send({ type: 'b' }, 11)
  assert.equal(waiting.length, 1)
  assert.equal(waiting[0].kind, 'set-timer')
  assert.equal(waiting[0].timer, 'pump')
  assert.ok(waiting[0].delay > 0)
  assert.deepEqual(m.send({ type: 'c' }, 12), []) // the timer is already set
  assert.deepEqual(sent(m.timerFired('pump', 11 + waiting[0].delay)), [{ type: 'b' }])
})

test('terminal input queued while the bucket is dry is merged into one input', () => {
  const m = connection({ rateLimit: { count: 2, windowMs: 1000 } })
  authenticated(m, consumer([]))
  m.send({ input: 'a' }, 3)
  m.send({ input: 'b' }, 3)
  assert.deepEqual(sent(m.timerFired('pump', 1000)), [{ type: 'input', data: 'ab' }])
})

test('a transient close: disconnected, then after the consumers heard, a backoff retry', () => {
  const m = connection()
  const { gen } = authenticated(m)
  const closed = m.socketClosed(gen, 1006, '')
  assert.deepEqual(kinds(closed), ['clear-timer', 'clear-timer', 'clear-timer', 'disconnected'])
  const err = closed.at(-1).err
  assert.equal(err.code, 'CONNECTION_LOST')
  assert.equal(err.closeCode, 1006)
  assert.equal(m.canSend, false)
  const retry = m.afterDisconnect()
  assert.deepEqual(retry, [
    { kind: 'state', state: 'reconnecting' },
    { kind: 'set-timer', timer: 'retry', delay: 500 }
  ])
  assert.deepEqual(m.afterDisconnect(), []) // asked once per loss
  assert.deepEqual(
    m.attach(consumer([]), 20).filter(a => a.kind === 'open'),
    []
  ) // the retry is pending
  const reopened = m.timerFired('retry', 600)
  assert.deepEqual(reopened, [{ kind: 'open', url: URL, generation: 3 }]) // already 'reconnecting'
  // Anything from the old socket is ignored.
  assert.deepEqual(m.received(gen, msg({ type: 'connected' }), 601), [])
  assert.deepEqual(m.socketClosed(gen, 1006, ''), [])
})

test('backoff grows per failed attempt and resets once authenticated', () => {
  const m = connection({ backoff: { random: () => 0.999999 } })
  let gen = m.attach(consumer([]), 0).at(-1).generation
  const delays = []
  for (let i = 0; i < 3; i++) {
    m.socketClosed(gen, 1006, '')
    delays.push(Math.round(m.afterDisconnect().at(-1).delay))
    gen = m.timerFired('retry', 0).at(-1).generation
  }
  assert.deepEqual(delays, [1000, 2000, 4000])
  m.received(gen, msg({ type: 'connected' }), 0)
  m.tokenReady(gen, 't', 0)
  m.received(gen, msg({ type: 'authenticated' }), 0)
  m.socketClosed(gen, 1013, 'slow')
  assert.equal(Math.round(m.afterDisconnect().at(-1).delay), 1000)
})

test('4001, 1008 and 1009 are final: the link closes and fails its consumers', () => {
  for (const [code, error] of [
    [4001, 'AUTH_FAILED'],
    [1008, 'CONNECTION_CLOSED'],
    [1009, 'CONNECTION_CLOSED']
  ]) {
    const m = connection()
    const { gen, c } = authenticated(m)
    const out = m.socketClosed(gen, code, 'why')
    const fail = out.at(-1)
    assert.equal(fail.kind, 'fail', String(code))
    assert.equal(fail.err.code, error)
    assert.equal(fail.err.closeCode, code)
    assert.deepEqual(fail.consumers, [c])
    assert.ok(kinds(out).includes('forget'))
    assert.deepEqual(out.at(-2), { kind: 'state', state: 'closed' })
    assert.equal(m.closed, true)
  }
})

test('an AUTH_FAILED error makes the following close final with that error', () => {
  const m = connection()
  const gen = m.attach(consumer([]), 0).at(-1).generation
  m.received(gen, msg({ type: 'connected' }), 1)
  m.tokenReady(gen, 'bad', 2)
  assert.deepEqual(kinds(m.received(gen, msg({ type: 'error', code: 'AUTH_FAILED', message: 'nope' }), 3)), [
    'clear-timer'
  ])
  const fail = m.socketClosed(gen, 1000, '').at(-1)
  assert.equal(fail.err.code, 'AUTH_FAILED')
  assert.equal(fail.err.message, 'nope')
  assert.equal(fail.err.closeCode, 1000)
})

test('other errors and messages are routed to the consumers', () => {
  const m = connection()
  const { gen } = authenticated(m)
  const err = m.received(gen, msg({ type: 'error', code: 'RATE_LIMIT', message: 'slow down' }), 5).at(-1)
  assert.equal(err.kind, 'route-error')
  assert.equal(err.err.code, 'RATE_LIMIT')
  const line = { type: 'log', containerId: 'web', data: 'x' }
  assert.deepEqual(m.received(gen, msg(line), 6).at(-1), { kind: 'route', msg: line })
  assert.deepEqual(kinds(m.received(gen, 'not json', 7)), ['clear-timer'])
  assert.deepEqual(kinds(m.received(gen, msg({ type: 'pong' }), 8)), ['clear-timer'])
})

test('getToken() failing ends the connection finally with TOKEN_ERROR', () => {
  const m = connection()
  const gen = m.attach(consumer([]), 0).at(-1).generation
  m.received(gen, msg({ type: 'connected' }), 1)
  assert.deepEqual(m.tokenFailed(gen, new Error('vault down')), [{ kind: 'close-socket', code: 1000, reason: '' }])
  const fail = m.socketClosed(gen, 1000, '').at(-1)
  assert.equal(fail.err.code, 'TOKEN_ERROR')
  assert.match(fail.err.message, /vault down/)
})

test('token refresh: a timer before exp (getToken only), then a new token on the open socket', () => {
  const exp = WALL / 1000 + 600
  const m = connection({ refreshes: true })
  const { gen, auth } = authenticated(m, consumer([]), jwt({ exp }))
  assert.deepEqual(auth.at(-1), { kind: 'set-timer', timer: 'refresh', delay: (600 - 30) * 1000 })
  assert.deepEqual(m.timerFired('refresh', 10), [{ kind: 'fetch-token', generation: gen }])
  assert.deepEqual(sent(m.tokenReady(gen, 'fresh', 11)), [{ type: 'auth', token: 'fresh' }])
  // Without getToken (a fixed token) there is nothing to refresh with.
  const fixed = connection()
  assert.deepEqual(authenticated(fixed, consumer([]), jwt({ exp })).auth.at(-1), {
    kind: 'clear-timer',
    timer: 'refresh'
  })
  // A refresh timer firing on a connection that is not authenticated does nothing.
  const down = connection({ refreshes: true })
  down.attach(consumer([]), 0)
  assert.deepEqual(down.timerFired('refresh', 1), [])
})

test('missing heartbeats: the idle timer closes the socket with 4000 and counts it lost', () => {
  const m = connection()
  const { gen } = authenticated(m)
  m.received(gen, msg({ type: 'ping' }), 1000)
  m.received(gen, msg({ type: 'ping' }), 31000) // one interval seen: 30 s
  const next = m.received(gen, msg({ type: 'pong' }), 31001)
  assert.deepEqual(next[0], { kind: 'set-timer', timer: 'idle', delay: 75000 }) // 2.5 heartbeats
  const idle = m.timerFired('idle', 106000)
  assert.deepEqual(idle[0], { kind: 'close-socket', code: 4000, reason: 'no heartbeat from the server' })
  assert.equal(idle.at(-1).kind, 'disconnected')
  assert.equal(idle.at(-1).err.closeCode, 1006)
  // An explicit idleTimeout arms at once.
  const fixed = connection({ idleTimeout: 500 })
  const g = fixed.attach(consumer([]), 0).at(-1).generation
  assert.deepEqual(fixed.received(g, msg({ type: 'connected' }), 1)[0], {
    kind: 'set-timer',
    timer: 'idle',
    delay: 500
  })
})

test('detach: unsubscribes what no other consumer uses; the last one closes the link', () => {
  const m = connection()
  const a = consumer([], [{ type: 'unsubscribe_logs', containerId: 'web' }])
  const b = consumer([], [{ type: 'unsubscribe_logs', containerId: 'web' }])
  const c = consumer([], [{ type: 'unsubscribe_stats', containerId: 'db' }])
  authenticated(m, a)
  m.attach(b, 5)
  m.attach(c, 5)
  assert.deepEqual(m.detach(b, true, 6), []) // `a` still reads web's logs
  assert.deepEqual(sent(m.detach(c, true, 7)), [{ type: 'unsubscribe_stats', containerId: 'db' }])
  const last = m.detach(a, true, 8)
  assert.deepEqual(kinds(last), [
    'forget',
    'clear-timer',
    'clear-timer',
    'clear-timer',
    'clear-timer',
    'close-socket',
    'state'
  ])
  assert.deepEqual(last.at(-2), { kind: 'close-socket', code: 1000, reason: '' })
  assert.deepEqual(m.close(), []) // once
  assert.deepEqual(
    m.attach(consumer([]), 9).filter(x => x.kind === 'open'),
    []
  ) // closed for good
})

test('without reconnect, or with attempts exhausted, a loss fails the consumers', () => {
  const once = connection({ reconnect: false })
  const { gen } = authenticated(once)
  once.socketClosed(gen, 1006, '')
  assert.equal(once.afterDisconnect().at(-1).err.code, 'CONNECTION_LOST')
  const limited = connection({ backoff: { maxAttempts: 1, random: () => 0 } })
  let g = limited.attach(consumer([]), 0).at(-1).generation
  limited.socketClosed(g, 1006, '')
  assert.equal(limited.afterDisconnect().at(-1).kind, 'set-timer')
  g = limited.timerFired('retry', 0).at(-1).generation
  limited.socketClosed(g, 1006, '')
  const gaveUp = limited.afterDisconnect().at(-1)
  assert.equal(gaveUp.err.code, 'CONNECTION_CLOSED')
  assert.match(gaveUp.err.message, /gave up after 1 attempts/)
  // A loss with no consumer left just closes.
  const empty = connection()
  const e = empty.attach(consumer([]), 0).at(-1).generation
  empty.consumers.length = 0
  empty.socketClosed(e, 1006, '')
  assert.equal(empty.afterDisconnect().at(-1).state, 'closed')
})
