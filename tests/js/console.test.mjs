// Pure modules of the web console (no DOM): ANSI parsing, events description.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { PALETTE, parseAnsi, stripAnsi } from '../../src/openpanel_ws/web/static/js/ansi.js'
import { describe } from '../../src/openpanel_ws/web/static/js/events.js'

test('plain text is one unstyled segment', () => {
  assert.deepEqual(parseAnsi('hello <b>x</b>'), [{ text: 'hello <b>x</b>', style: {} }])
})

test('SGR colours, bold, reset', () => {
  const segs = parseAnsi('\x1b[31mred\x1b[0m plain \x1b[1;32mbold green\x1b[22m green')
  assert.deepEqual(
    segs.map(s => s.text),
    ['red', ' plain ', 'bold green', ' green']
  )
  assert.equal(segs[0].style.fg, PALETTE[1])
  assert.deepEqual(segs[1].style, {})
  assert.equal(segs[2].style.bold, true)
  assert.equal(segs[2].style.fg, PALETTE[2])
  assert.equal(segs[3].style.bold, undefined)
  assert.equal(segs[3].style.fg, PALETTE[2])
})

test('256 and truecolour, bright and background', () => {
  const [a, b, c, d] = parseAnsi('\x1b[38;5;208ma\x1b[48;2;1;2;3mb\x1b[0;91mc\x1b[38;5;240md')
  assert.equal(a.style.fg, 'rgb(255,135,0)')
  assert.equal(b.style.bg, 'rgb(1,2,3)')
  assert.equal(c.style.fg, PALETTE[9])
  assert.equal(d.style.fg, 'rgb(88,88,88)')
})

test('other escape sequences vanish; control characters become visible', () => {
  const line = '\x1b]0;title\x07A\x1b[2J\x1b[H\x1b[?25lB\x1b]8;;http://x\x1b\\C\x08D\x00'
  assert.equal(
    parseAnsi(line)
      .map(s => s.text)
      .join(''),
    'ABC\u2408D\u2400'
  )
  assert.equal(stripAnsi('\x1b[31mred\x1b[0m'), 'red')
})

test('a truncated sequence at the end does not throw or loop', () => {
  assert.equal(
    parseAnsi('x\x1b[31')
      .map(s => s.text)
      .join(''),
    'x[31'
  )
  assert.equal(
    parseAnsi('x\x1b')
      .map(s => s.text)
      .join(''),
    'x'
  )
})

test('events: docker_event and system_log rows', () => {
  const ev = describe({
    type: 'docker_event',
    timestamp: 't',
    event: {
      Type: 'container',
      Action: 'die',
      Actor: { ID: 'a'.repeat(64), Attributes: { name: 'web', image: 'img', exitCode: '3' } }
    }
  })
  assert.deepEqual(
    [ev.kind, ev.type, ev.action, ev.name, ev.text],
    ['event', 'container', 'die', 'web', 'img · exit 3']
  )
  const log = describe({ type: 'system_log', timestamp: 't', level: 'error', message: 'OOM', source: 'docker' })
  assert.deepEqual([log.kind, log.type, log.level, log.text], ['log', 'docker', 'error', 'OOM'])
})

test('events: the host column, and host_status rows', () => {
  const ev = describe({
    type: 'docker_event',
    host: 'prod-2',
    timestamp: 't',
    event: { Type: 'container', Action: 'start' }
  })
  assert.equal(ev.host, 'prod-2')
  assert.equal(describe({ type: 'system_log', timestamp: 't', message: 'x', source: 'syslog' }).host, '')
  const down = describe({ type: 'host_status', host: 'b', state: 'down', error: 'refused', timestamp: 't' })
  assert.deepEqual(
    [down.kind, down.host, down.type, down.action, down.level, down.text],
    ['log', 'b', 'host', 'down', 'error', 'refused']
  )
})
