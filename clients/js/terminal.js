// terminal.js: an interactive terminal on its own link, reattached after a reconnect.

import { Consumer } from './consumers.js'
import { CLOSE, OpenPanelError } from './errors.js'
import { Link } from './link.js'
import { makeEvent } from './pure.js'

/** @typedef {{shell?: string, cols?: number, rows?: number, command?: string[], tty?: boolean, stdin?: boolean, host?: string}} TerminalOptions */

/** How long a terminal tries to reattach after its connection was lost (ms); the
 * gateway keeps a detached session for its grace period (60 s by default). */
export const RESUME_TIMEOUT = 90000

/**
 * An interactive terminal. Events: 'opened' {sessionId, containerId}, 'output' {data},
 * 'closed' {reason, exitCode}, 'error' OpenPanelError; and, with a gateway that keeps
 * terminal sessions, 'resuming' {closeCode} and 'resumed' {sessionId, lostBytes}.
 *
 * A dropped connection (not a gateway shutdown, 1001) is reconnected and the same
 * session reattached with the `seq` of the last output received, so nothing is lost or
 * repeated; keystrokes and resizes written meanwhile are sent after the resume. When the session did not survive
 * (a gateway without sessions, the grace period over, RESUME_TIMEOUT) the terminal
 * reports 'error' CONNECTION_LOST, then 'closed'.
 */
export class TerminalHandle extends EventTarget {
  /** @param {import('./openpanel-ws.js').OpenPanelClient} client @param {string} containerId @param {TerminalOptions} opts */
  constructor(client, containerId, opts) {
    super()
    /** @type {string} */
    this.containerId = containerId
    /** @type {string|undefined} the Docker host: the one named, else the one terminal_opened names */
    this.host = opts.host ?? client.host ?? undefined
    /** @type {string|undefined} */
    this.sessionId = undefined
    /** @type {number|undefined|null} */
    this.exitCode = undefined
    /** @type {string|undefined} */
    this.reason = undefined
    this.opened = false
    this.closed = false
    /** @type {any[]} input and resizes written before the terminal opened */
    this.pending = []
    /** @type {number|undefined} `seq` of the last output received (sessions) */
    this.lastSeq = undefined
    this.resuming = false
    this.resumes = 0
    /** True when the program was killed because its container stopped or went away. */
    this.containerLost = false
    this.consumer = new TerminalConsumer(this, opts)
    this.link = new Link(client, 'terminal')
    client.adopt(this.link)
    this.link.attach(this.consumer)
  }

  /**
   * @overload
   * @param {'opened'} type
   * @param {(ev: CustomEvent<{sessionId: string, containerId: string}>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {'output'} type
   * @param {(ev: CustomEvent<{data: string, stream?: 'stdout'|'stderr'}>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {'closed'} type
   * @param {(ev: CustomEvent<{reason: string, exitCode: number|null|undefined, containerLost?: boolean}>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {'error'} type
   * @param {(ev: CustomEvent<OpenPanelError>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {'resuming'} type
   * @param {(ev: CustomEvent<{closeCode?: number}>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {'resumed'} type
   * @param {(ev: CustomEvent<{sessionId: string, lostBytes: number}>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject|null} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /** @param {string} type @param {any} listener @param {boolean|AddEventListenerOptions} [options] */
  addEventListener(type, listener, options) {
    super.addEventListener(type, listener, options)
  }

  /** Keystrokes or a paste; coalesced when the rate-limit mirror runs low. @param {string} data */
  write(data) {
    if (this.closed || !data) return
    const item = { input: String(data) }
    // Typed while reattaching: sent after the resume (as the Python client does).
    if (this.opened && !this.resuming) this.link.send(item)
    else this.pending.push(item)
  }

  /** @param {number} cols @param {number} rows */
  resize(cols, rows) {
    const clamp = (/** @type {number} */ n) => Math.max(1, Math.min(1000, Math.floor(n)))
    const msg = { type: 'resize', cols: clamp(cols), rows: clamp(rows) }
    if (this.closed) return
    this.consumer.opts.cols = msg.cols
    this.consumer.opts.rows = msg.rows
    if (this.opened && !this.resuming) this.link.send(msg)
    else this.pending.push(msg)
  }

  /** End the program's input (extension `eof`; with a TTY it types Ctrl-D). */
  eof() {
    if (this.closed) return
    if (this.opened && !this.resuming) this.link.send({ type: 'eof' })
    else this.pending.push({ type: 'eof' })
  }

  /** Ask the server to end the shell (`close_terminal`); 'closed' follows. */
  close() {
    if (this.closed) return
    if (this.opened && !this.resuming && this.link.send({ type: 'close_terminal' })) {
      // the server answers terminal_closed; give up on it after 5 s
      setTimeout(() => this.finish('User closed', null), 5000)
      return
    }
    this.finish('User closed', null)
  }

  /** @param {string} reason @param {number|null|undefined} exitCode */
  finish(reason, exitCode) {
    if (this.closed) return
    this.closed = true
    this.reason = reason
    this.exitCode = exitCode
    this.consumer.ended = true
    this.resuming = false
    clearTimeout(this.consumer.giveUp)
    this.link.close()
    this.dispatchEvent(
      makeEvent('closed', this.containerLost ? { reason, exitCode, containerLost: true } : { reason, exitCode })
    )
  }
}

export class TerminalConsumer extends Consumer {
  /** @param {TerminalHandle} term @param {TerminalOptions} opts */
  constructor(term, opts) {
    super(undefined)
    this.term = term
    this.opts = opts
    this.sentOpen = false
    /** @type {any} */
    this.giveUp = null
  }

  subscribeMessages() {
    const term = this.term
    if (this.sentOpen) {
      if (!term.resuming || !term.sessionId) return []
      /** @type {any} */
      const again = { type: 'open_terminal', ...this.where(), sessionId: term.sessionId }
      if (term.lastSeq !== undefined) again.lastSeq = term.lastSeq
      return [again]
    }
    this.sentOpen = true
    /** @type {any} */
    const msg = { type: 'open_terminal', ...this.where() }
    if (this.opts.shell) msg.shell = this.opts.shell
    if (this.opts.cols && this.opts.rows) {
      msg.cols = this.opts.cols
      msg.rows = this.opts.rows
    }
    // Terminal extensions (docs/protocol.md): sent only when not the default.
    if (this.opts.command?.length) msg.command = [...this.opts.command]
    if (this.opts.tty === false) msg.tty = false
    if (this.opts.stdin === false) msg.stdin = false
    return [msg]
  }

  where() {
    /** @type {{containerId: string, host?: string}} */
    const msg = { containerId: this.term.containerId }
    if (this.term.host !== undefined) msg.host = this.term.host
    return msg
  }

  /** @param {any} msg */
  handle(msg) {
    const term = this.term
    switch (msg.type) {
      case 'terminal_opened':
        if (term.opened) {
          if (!term.resuming) return true
          if (msg.resumed === true && msg.sessionId === term.sessionId) {
            term.resuming = false
            term.resumes += 1
            clearTimeout(this.giveUp)
            const start = msg.seq
            const lostBytes =
              Number.isInteger(start) && term.lastSeq !== undefined && start > term.lastSeq ? start - term.lastSeq : 0
            term.dispatchEvent(makeEvent('resumed', { sessionId: term.sessionId, lostBytes }))
            for (const item of term.pending.splice(0)) this.link?.send(item)
          } else {
            // A gateway without sessions opened a new shell: not the one we had.
            this.link?.send({ type: 'close_terminal' })
            this.didNotSurvive('the gateway opened a new session instead')
          }
          return true
        }
        term.opened = true
        term.sessionId = msg.sessionId
        if (term.host === undefined && typeof msg.host === 'string') term.host = msg.host
        term.dispatchEvent(makeEvent('opened', { sessionId: msg.sessionId, containerId: term.containerId }))
        for (const item of term.pending.splice(0)) this.link?.send(item)
        return true
      case 'terminal_output':
        if (Number.isInteger(msg.seq)) term.lastSeq = msg.seq
        term.dispatchEvent(
          makeEvent(
            'output',
            typeof msg.stream === 'string'
              ? { data: String(msg.data ?? ''), stream: msg.stream }
              : { data: String(msg.data ?? '') }
          )
        )
        return true
      case 'terminal_closed': {
        const code = Number.isInteger(msg.exitCode) ? msg.exitCode : null
        term.containerLost = msg.containerLost === true
        term.finish(String(msg.reason ?? ''), code)
        return true
      }
      case 'terminal_error':
        if (term.resuming) {
          this.didNotSurvive(String(msg.message ?? 'terminal error'))
          return true
        }
        this.report(
          new OpenPanelError('TERMINAL_ERROR', String(msg.message ?? 'terminal error'), {
            containerId: term.containerId,
            raw: msg
          })
        )
        if (!term.opened) term.finish(String(msg.message ?? 'terminal error'), null)
        return true
      default:
        return false
    }
  }

  /** @param {string} why */
  didNotSurvive(why) {
    this.fail(
      new OpenPanelError('CONNECTION_LOST', `the terminal session did not survive the reconnect (${why})`, {
        containerId: this.term.containerId
      })
    )
  }

  /** @param {OpenPanelError} err */
  onDisconnect(err) {
    const term = this.term
    if (term.closed) return
    // A gateway shutdown (1001) ends its sessions: no point in waiting for them.
    if (!term.opened || !term.sessionId || err.closeCode === CLOSE.GOING_AWAY) {
      this.fail(err)
      return
    }
    if (!term.resuming) {
      term.resuming = true
      this.giveUp = setTimeout(
        () => this.didNotSurvive(`no reattach within ${RESUME_TIMEOUT / 1000} s`),
        RESUME_TIMEOUT
      )
      term.dispatchEvent(makeEvent('resuming', { closeCode: err.closeCode }))
    }
  }

  /** @param {OpenPanelError} err */
  handleError(err) {
    if (this.term.resuming) {
      this.didNotSurvive(err.message)
      return true
    }
    this.report(err)
    // Before the terminal opened any error is its answer; afterwards only a refusal
    // ends it (a rejected resize must not kill the session: it is just reported).
    if (!this.term.opened || err.code === 'PERMISSION_DENIED' || err.code === 'CONTAINER_NOT_FOUND') {
      this.term.finish(err.message, null)
    }
    return true
  }

  /** @param {OpenPanelError} err */
  fail(err) {
    if (this.term.closed) return
    this.report(err)
    this.term.finish(err.message, null)
  }

  /** @param {OpenPanelError} err */
  report(err) {
    this.term.dispatchEvent(makeEvent('error', err))
  }
}
