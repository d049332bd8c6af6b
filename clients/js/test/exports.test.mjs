// The one entry point keeps exporting what the single-file client exported, so
// `import { OpenPanelClient } from '/client/openpanel-ws.js'` and friends keep working.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import * as api from '../openpanel-ws.js'

const BEFORE_THE_SPLIT = [
  'Backoff',
  'CLOSE',
  'EventCursor',
  'LogCursor',
  'MAX_INPUT_CHARS',
  'OpenPanelClient',
  'OpenPanelError',
  'Outbox',
  'RESUME_TIMEOUT',
  'SERVER_RATE_LIMITS',
  'TerminalHandle',
  'TokenBucket',
  'VERSION',
  'default',
  'defaultUrl',
  'errorFromMessage',
  'gatewayUrl',
  'mirrorLimit',
  'parseTimestampNanos',
  'refreshDelay',
  'rfc3339FromNanos',
  'shouldReconnect',
  'tokenExpiry'
]

test('the entry point exports everything it exported as one file, and ClientConnection', () => {
  for (const name of BEFORE_THE_SPLIT) assert.ok(name in api, name)
  assert.equal(api.default, api.OpenPanelClient)
  assert.equal(typeof api.ClientConnection, 'function')
})
