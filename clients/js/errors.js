// errors.js: the client's errors and the close-code policy (which closes are final).

/**
 * Every error this client reports. `code` is the server's error code (AUTH_FAILED,
 * CONTAINER_NOT_FOUND, PERMISSION_DENIED, RATE_LIMIT, INVALID_MESSAGE,
 * DOCKER_UNAVAILABLE, INTERNAL_ERROR, ...) or one of the client's own:
 * CONNECTION_CLOSED (a close code that forbids retrying), CONNECTION_LOST (a terminal's
 * connection dropped), SUBSCRIPTION_ENDED (e.g. the container was removed),
 * TERMINAL_ERROR, TOKEN_ERROR (getToken() threw), NO_WEBSOCKET.
 */
export class OpenPanelError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{containerId?: string, host?: string, closeCode?: number, raw?: object}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message)
    this.name = 'OpenPanelError'
    /** @type {string} */
    this.code = code
    /** @type {string|undefined} */
    this.containerId = extra.containerId
    /** @type {string|undefined} the Docker host of the container named (docs/protocol.md "Hosts") */
    this.host = extra.host
    /** @type {number|undefined} */
    this.closeCode = extra.closeCode
    /** @type {object|undefined} */
    this.raw = extra.raw
  }
}

/**
 * An `error` message of the protocol as an OpenPanelError. The specification's
 * code-less `{"type":"error","message":"Invalid token"}` is AUTH_FAILED.
 * @param {any} msg
 * @returns {OpenPanelError}
 */
export function errorFromMessage(msg) {
  let code = typeof msg.code === 'string' && msg.code ? msg.code : ''
  const text = typeof msg.message === 'string' && msg.message ? msg.message : code || 'error'
  if (!code) code = text === 'Invalid token' ? 'AUTH_FAILED' : 'SERVER_ERROR'
  const containerId = typeof msg.containerId === 'string' ? msg.containerId : undefined
  const host = typeof msg.host === 'string' ? msg.host : undefined
  return new OpenPanelError(code, text, { containerId, host, raw: msg })
}

export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
  AUTH_FAILED: 4001,
  HEARTBEAT_TIMEOUT: 4002
})

// Closes after which reconnecting cannot help: a bad token, a policy refusal
// (flooding), a message of ours the server cannot take. Everything else (1001
// shutdown, 1006 lost, 1013 slow consumer, 4002 heartbeat, 1011, ...) is transient.
/** @type {Set<number>} */
const FINAL_CLOSE_CODES = new Set([CLOSE.AUTH_FAILED, CLOSE.POLICY_VIOLATION, CLOSE.MESSAGE_TOO_BIG])

/** @param {number|undefined|null} code */
export function shouldReconnect(code) {
  return code == null || !FINAL_CLOSE_CODES.has(code)
}
