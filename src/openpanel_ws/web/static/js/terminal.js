// Terminal view: xterm.js + fit add-on (vendored, loaded on first use) over the JS client.
// A shell that exits shows its exit code and offers a new session. After a dropped
// connection the client reattaches the same shell when the gateway kept the session
// ('resuming' / 'resumed'); when it could not (CONNECTION_LOST), the view opens a new
// shell through the client with backoff, and says so.

import { debounce, el, toast } from './util.js'

let xtermModules = null
function loadXterm() {
  xtermModules ??= Promise.all([import('../vendor/xterm/xterm.mjs'), import('../vendor/addon-fit/addon-fit.mjs')])
  return xtermModules
}

const THEME = {
  background: '#0d1117',
  foreground: '#d7dae0',
  cursor: '#58a6ff',
  selectionBackground: '#264f78',
  black: '#3b4048',
  red: '#e06c75',
  green: '#98c379',
  yellow: '#e5c07b',
  blue: '#61afef',
  magenta: '#c678dd',
  cyan: '#56b6c2',
  white: '#d7dae0',
  brightBlack: '#7f848e',
  brightRed: '#ff7b86',
  brightGreen: '#b5e890',
  brightYellow: '#ffd88a',
  brightBlue: '#82c4ff',
  brightMagenta: '#e09cf5',
  brightCyan: '#7bd7e3',
  brightWhite: '#ffffff'
}

export class TerminalView {
  constructor(panel, { client, container }) {
    this.panel = panel
    this.client = client
    this.container = container
    this.handle = null
    this.destroyed = false
    this.retries = 0
    this.retryTimer = null
    this.shellSel = el(
      'select',
      { class: 'input', 'aria-label': 'Shell' },
      ...['/bin/sh', '/bin/bash', '/bin/ash'].map(s => el('option', { value: s, text: s }))
    )
    this.state = el('span', { class: 'term-state badge', text: 'starting…' })
    this.exit = el('span', { class: 'term-exit muted small', 'data-exit-code': '' })
    this.newBtn = el('button', { type: 'button', class: 'btn', text: 'New session', onclick: () => this.open() })
    this.copyBtn = el('button', {
      type: 'button',
      class: 'btn',
      text: 'Copy',
      title: 'Copy selection (Ctrl+Shift+C)',
      onclick: () => this.copy()
    })
    this.pasteBtn = el('button', {
      type: 'button',
      class: 'btn',
      text: 'Paste',
      title: 'Paste (Ctrl+Shift+V)',
      onclick: () => this.paste()
    })
    this.host = el('div', { class: 'term-host', 'aria-label': `Terminal in ${container.name}` })
    panel.replaceChildren(
      el(
        'div',
        { class: 'toolbar', role: 'toolbar', 'aria-label': 'Terminal controls' },
        this.state,
        this.exit,
        el('span', { class: 'grow' }),
        this.shellSel,
        this.newBtn,
        this.copyBtn,
        this.pasteBtn
      ),
      this.host
    )
    this.setup()
  }

  async setup() {
    const [{ Terminal }, { FitAddon }] = await loadXterm()
    if (this.destroyed) return
    this.term = new Terminal({
      cursorBlink: true,
      fontSize: 13,
      scrollback: 5000,
      theme: THEME,
      allowProposedApi: false,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace'
    })
    this.fit = new FitAddon()
    this.term.loadAddon(this.fit)
    this.term.open(this.host)
    this.term.attachCustomKeyEventHandler(e => {
      if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true
      if (e.code === 'KeyC') {
        this.copy()
        return false
      }
      if (e.code === 'KeyV') {
        this.paste()
        return false
      }
      return true
    })
    this.term.onData(data => this.handle?.write(data))
    this.fitNow()
    this.observer = new ResizeObserver(debounce(() => this.fitNow(), 60))
    this.observer.observe(this.host)
    this.open()
  }

  fitNow() {
    if (!this.term || !this.host.clientWidth) return
    try {
      this.fit.fit()
    } catch {
      return
    }
    const { cols, rows } = this.term
    if (this.handle && (cols !== this.sentCols || rows !== this.sentRows)) {
      this.sentCols = cols
      this.sentRows = rows
      this.handle.resize(cols, rows)
    }
  }

  open() {
    clearTimeout(this.retryTimer)
    this.handle?.close()
    this.exit.textContent = ''
    this.exit.dataset.exitCode = ''
    this.newBtn.disabled = true
    this.setState('connecting…', 'pending')
    const { cols, rows } = this.term
    this.sentCols = cols
    this.sentRows = rows
    const handle = this.client.openTerminal(this.container.id, {
      shell: this.shellSel.value,
      cols,
      rows,
      host: this.container.host
    })
    this.handle = handle
    handle.addEventListener('opened', e => {
      if (this.handle !== handle) return
      this.retries = 0
      this.setState(e.detail?.resumed ? 'resumed' : 'connected', 'ok')
      this.panel.dataset.session = e.detail?.sessionId ?? ''
      this.term.focus()
      this.fitNow()
    })
    handle.addEventListener('output', e => {
      if (this.handle === handle) this.term.write(e.detail.data)
    })
    handle.addEventListener('resuming', () => {
      if (this.handle === handle) this.setState('reconnecting…', 'pending')
    })
    handle.addEventListener('resumed', e => {
      if (this.handle !== handle) return
      this.setState('resumed', 'ok')
      const lost = e.detail?.lostBytes
      if (lost) this.term.write(`\r\n\x1b[2m[reconnected: ${lost} bytes of output were lost]\x1b[0m\r\n`)
      this.sentCols = 0 // the size may have changed meanwhile
      this.fitNow()
    })
    handle.addEventListener('closed', e => {
      if (this.handle !== handle) return
      if (handle.lost && !this.destroyed) {
        this.reconnect()
        return
      }
      const { reason, exitCode } = e.detail || {}
      const code = exitCode ?? null
      this.setState('closed', code ? 'bad' : 'idle')
      this.exit.textContent = `${reason || 'closed'}${code !== null ? ` · exit code ${code}` : ''}`
      this.exit.dataset.exitCode = code === null ? '' : String(code)
      this.term.write(`\r\n\x1b[2m[${reason || 'closed'}${code !== null ? `, exit code ${code}` : ''}]\x1b[0m\r\n`)
      this.newBtn.disabled = false
      this.handle = null
    })
    handle.addEventListener('error', e => {
      if (this.handle !== handle) return
      const err = e.detail
      if (err?.code === 'CONNECTION_LOST') {
        handle.lost = true
        return
      }
      this.setState('error', 'bad')
      this.exit.textContent = err?.message || String(err)
      this.newBtn.disabled = false
    })
  }

  reconnect() {
    this.handle = null
    const delay = Math.min(30000, 1000 * 2 ** this.retries) * (0.5 + Math.random() / 2)
    this.retries++
    this.setState('reconnecting…', 'pending')
    this.term.write(
      `\r\n\x1b[2m[connection lost: reconnecting in ${Math.round(delay / 1000)} s, a new shell]\x1b[0m\r\n`
    )
    this.newBtn.disabled = false
    this.retryTimer = setTimeout(() => {
      if (!this.destroyed) this.open()
    }, delay)
  }

  setState(text, kind) {
    this.state.textContent = text
    this.state.dataset.kind = kind
  }

  async copy() {
    const text = this.term?.getSelection()
    if (!text) {
      toast('Select text in the terminal first')
      return
    }
    try {
      await navigator.clipboard.writeText(text)
      toast('Copied')
    } catch {
      toast('The browser refused clipboard access', 'error')
    }
    this.term.focus()
  }

  async paste() {
    try {
      const text = await navigator.clipboard.readText()
      if (text) this.term.paste(text)
    } catch {
      toast('The browser refused clipboard access: use Ctrl+V / Cmd+V in the terminal', 'error')
    }
    this.term?.focus()
  }

  destroy() {
    this.destroyed = true
    clearTimeout(this.retryTimer)
    this.handle?.close()
    this.handle = null
    this.observer?.disconnect()
    this.term?.dispose()
    this.panel.replaceChildren()
  }
}
