// Unit tests of the client's pure parts: `node --test clients/js/test/`.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import {
  Backoff,
  EventCursor,
  errorFromMessage,
  gatewayUrl,
  LogCursor,
  MAX_INPUT_CHARS,
  mirrorLimit,
  Outbox,
  parseTimestampNanos,
  refreshDelay,
  rfc3339FromNanos,
  SERVER_RATE_LIMITS,
  shouldReconnect,
  TokenBucket,
  tokenExpiry
} from '../openpanel-ws.js'

test('backoff: full jitter, 1 s base doubling to a 30 s cap', () => {
  const top = new Backoff({ random: () => 0.999999 })
  const ceilings = Array.from({ length: 8 }, () => Math.round(top.nextDelay()))
  assert.deepEqual(ceilings, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000])
  const low = new Backoff({ random: () => 0 })
  assert.equal(low.nextDelay(), 0) // full jitter: anywhere from 0
  const mid = new Backoff({ random: () => 0.5 })
  mid.nextDelay()
  mid.nextDelay()
  mid.reset()
  assert.equal(mid.nextDelay(), 500)
})

test('backoff: maxAttempts gives up', () => {
  const b = new Backoff({ maxAttempts: 2 })
  assert.notEqual(b.nextDelay(), null)
  assert.notEqual(b.nextDelay(), null)
  assert.equal(b.nextDelay(), null)
})

test('close codes: 4001, 1008, 1009 are final; 1013, 1001, 1006, 4002 reconnect', () => {
  for (const code of [4001, 1008, 1009]) assert.equal(shouldReconnect(code), false, String(code))
  for (const code of [1000, 1001, 1006, 1011, 1013, 4002, undefined])
    assert.equal(shouldReconnect(code), true, String(code))
})

test('gateway urls', () => {
  assert.equal(gatewayUrl('ws://h:3001', 'logs'), 'ws://h:3001/ws/logs')
  assert.equal(gatewayUrl('https://h/', 'terminal'), 'wss://h/ws/terminal')
  assert.equal(gatewayUrl('http://h:1/ws/containers', 'metrics'), 'ws://h:1/ws/metrics')
  assert.equal(gatewayUrl('h:9', 'containers'), 'ws://h:9/ws/containers')
})

test('typed errors from error messages', () => {
  const e = errorFromMessage({
    type: 'error',
    code: 'CONTAINER_NOT_FOUND',
    message: 'Container not found',
    containerId: 'web'
  })
  assert.equal(e.code, 'CONTAINER_NOT_FOUND')
  assert.equal(e.containerId, 'web')
  assert.ok(e instanceof Error)
  // the specification's code-less shape
  assert.equal(errorFromMessage({ type: 'error', message: 'Invalid token' }).code, 'AUTH_FAILED')
  assert.equal(errorFromMessage({ type: 'error', message: 'odd' }).code, 'SERVER_ERROR')
})

test('token bucket admits the capacity then refills', () => {
  const b = new TokenBucket({ count: 10, windowMs: 1000 }, 0)
  let taken = 0
  while (b.tryTake(0)) taken++
  assert.equal(taken, 10)
  assert.equal(b.tryTake(50), false)
  assert.equal(b.tryTake(100), true) // 10/s: one token per 100 ms
})

test('the mirror is stricter than the server', () => {
  const m = mirrorLimit(SERVER_RATE_LIMITS.containers)
  assert.equal(m.count, 9)
  assert.ok(m.count / m.windowMs < 10 / 1000)
})

test('outbox: frames leave at once while tokens last; pong is free and first', () => {
  const box = new Outbox({ count: 10, windowMs: 1000 }, 0)
  box.push({ type: 'subscribe_logs', containerId: 'a' })
  box.pushFree({ type: 'pong' })
  assert.deepEqual(box.pop(0)[0], { type: 'pong' })
  assert.deepEqual(box.pop(0)[0], { type: 'subscribe_logs', containerId: 'a' })
  assert.deepEqual(box.pop(0), [null, Infinity])
})

test('outbox never exceeds the server bucket and coalesces held keys without losing any', () => {
  const box = new Outbox(SERVER_RATE_LIMITS.terminal, 0)
  const server = new TokenBucket(SERVER_RATE_LIMITS.terminal, 0)
  let typed = ''
  for (let i = 0; i < 300; i++) {
    box.push({ input: `x${i % 10}` })
    typed += `x${i % 10}`
  }
  let received = ''
  let frames = 0
  let t = 0
  while (box.length) {
    const [msg, wait] = box.pop(t)
    if (msg) {
      assert.equal(server.tryTake(t), true, `server would reject frame ${frames} at ${t} ms`)
      assert.equal(msg.type, 'input')
      received += msg.data
      frames++
    } else {
      t += wait
    }
  }
  assert.equal(received, typed) // nothing dropped, order kept
  assert.ok(frames < 300, `coalesced into ${frames} frames`)
})

test('outbox splits a huge paste into frames the server accepts, and keeps other messages in order', () => {
  const box = new Outbox(SERVER_RATE_LIMITS.terminal, 0)
  const paste = 'p'.repeat(MAX_INPUT_CHARS * 2 + 5)
  box.push({ input: paste })
  box.push({ type: 'resize', cols: 100, rows: 30 })
  box.push({ input: 'after' })
  const out = []
  let t = 0
  while (box.length) {
    const [msg, wait] = box.pop(t)
    if (msg) out.push(msg)
    else t += wait
  }
  assert.ok(out.every(m => m.type !== 'input' || m.data.length <= MAX_INPUT_CHARS))
  assert.equal(
    out
      .filter(m => m.type === 'input')
      .slice(0, 3)
      .map(m => m.data)
      .join(''),
    paste
  )
  assert.equal(out[3].type, 'resize')
  assert.deepEqual(out[4], { type: 'input', data: 'after' })
})

test('timestamps keep nanoseconds', () => {
  const ns = parseTimestampNanos('2026-11-27T00:06:12.035269178Z')
  assert.equal(rfc3339FromNanos(ns), '2026-11-27T00:06:12.035269178Z')
  assert.equal(parseTimestampNanos('2026-11-27T02:06:12.5+02:00'), parseTimestampNanos('2026-11-27T00:06:12.500Z'))
  assert.equal(parseTimestampNanos('yesterday'), null)
})

test('log cursor: a resume asks for a little before the last line and drops what was shown', () => {
  const c = new LogCursor()
  assert.deepEqual(c.resume(), {})
  assert.ok(c.accept('2026-01-01T00:00:01.000000001Z', 'stdout', 'a'))
  assert.ok(c.accept('2026-01-01T00:00:02.000000000Z', 'stdout', 'same'))
  assert.ok(c.accept('2026-01-01T00:00:02.000000000Z', 'stdout', 'same')) // a real repeat
  const resume = c.resume()
  assert.deepEqual(resume, { since: '2026-01-01T00:00:01.000000000Z', tail: 'all' })
  // the server replays from `since`: everything already shown is dropped...
  assert.equal(c.accept('2026-01-01T00:00:01.000000001Z', 'stdout', 'a'), false)
  assert.equal(c.accept('2026-01-01T00:00:02.000000000Z', 'stdout', 'same'), false)
  assert.equal(c.accept('2026-01-01T00:00:02.000000000Z', 'stdout', 'same'), false)
  // ...a third identical line at that instant is new, and so is everything later
  assert.equal(c.accept('2026-01-01T00:00:02.000000000Z', 'stdout', 'same'), true)
  assert.equal(c.accept('2026-01-01T00:00:03.000000000Z', 'stderr', 'b'), true)
  assert.equal(c.dropped, 3)
})

test('event cursor: resume since a margin before the newest, replayed ones dropped', () => {
  const c = new EventCursor()
  assert.equal(c.resumeSince(), undefined)
  const ev = (ns, action) => ({
    type: 'docker_event',
    timestamp: rfc3339FromNanos(BigInt(ns)),
    event: { Type: 'container', Action: action, Actor: { ID: 'x' }, timeNano: ns }
  })
  const line = (ns, text) => ({
    type: 'system_log',
    timestamp: rfc3339FromNanos(BigInt(ns)),
    level: 'info',
    source: 'docker',
    message: text
  })
  const t0 = 1800000000000000000
  assert.ok(c.accept(ev(t0, 'start')))
  assert.ok(c.accept(line(t0, 'x started')))
  assert.ok(c.accept(ev(t0 + 1000, 'die')))
  assert.equal(c.resumeSince(), rfc3339FromNanos(BigInt(t0 + 1000) - 2000000000n))
  assert.equal(c.accept(ev(t0, 'start')), false)
  assert.equal(c.accept(line(t0, 'x started')), false)
  assert.equal(c.accept(ev(t0 + 1000, 'die')), false)
  assert.ok(c.accept(ev(t0 + 2000, 'stop')))
  assert.equal(c.dropped, 3)
})

test('token expiry and when to refresh', () => {
  const b64 = o => Buffer.from(JSON.stringify(o)).toString('base64url')
  const jwt = `${b64({ alg: 'HS256' })}.${b64({ sub: 'a', exp: 2000 })}.sig`
  assert.equal(tokenExpiry(jwt), 2000)
  assert.equal(tokenExpiry('not-a-jwt'), null)
  assert.equal(refreshDelay(2000, 1000 * 1000), 970 * 1000) // 30 s before exp
  assert.equal(refreshDelay(2000, 1900 * 1000), 80 * 1000) // short-lived: at 80 % of what is left
  assert.equal(refreshDelay(2000, 1990 * 1000), 8000) // short-lived: at 80 %
  assert.equal(refreshDelay(2000, 2000 * 1000), 1000) // never below 1 s
})
