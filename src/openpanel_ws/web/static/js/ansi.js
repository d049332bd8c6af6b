// ANSI escape sequences -> styled text segments. Pure: no DOM, safe to unit test in Node.
//
// Only SGR (ESC [ ... m) changes the look: bold, dim, italic, underline, inverse, the 16
// colours, 256 colours and 24-bit colours. Every other control sequence (cursor moves,
// erase, OSC titles and hyperlinks, …) is dropped, and remaining C0 control characters
// become visible symbols, so a container can never move the page around. The caller turns
// segments into text nodes (textContent), so no byte of a log line is ever parsed as HTML.

// ESC [ params intermediates final | ESC ] ... (BEL | ESC \) | ESC + one char
// biome-ignore lint/suspicious/noControlCharactersInRegex: escape sequences are control characters
const SEQUENCE = /\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g
// biome-ignore lint/suspicious/noControlCharactersInRegex: this matches the control characters to strip
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g

export const PALETTE = [
  '#3b4048',
  '#e06c75',
  '#98c379',
  '#e5c07b',
  '#61afef',
  '#c678dd',
  '#56b6c2',
  '#d7dae0',
  '#7f848e',
  '#ff7b86',
  '#b5e890',
  '#ffd88a',
  '#82c4ff',
  '#e09cf5',
  '#7bd7e3',
  '#ffffff'
]

function color256(n) {
  if (n < 16) return PALETTE[n]
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255]
    const i = n - 16
    return `rgb(${v[Math.floor(i / 36)]},${v[Math.floor(i / 6) % 6]},${v[i % 6]})`
  }
  const g = 8 + (n - 232) * 10
  return `rgb(${g},${g},${g})`
}

const EMPTY = Object.freeze({})

function applySgr(style, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map(p => (p === '' ? 0 : Number(p)))
  let s = { ...style }
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]
    if (c === 0) s = {}
    else if (c === 1) s.bold = true
    else if (c === 2) s.dim = true
    else if (c === 3) s.italic = true
    else if (c === 4) s.underline = true
    else if (c === 7) s.inverse = true
    else if (c === 9) s.strike = true
    else if (c === 22) {
      delete s.bold
      delete s.dim
    } else if (c === 23) delete s.italic
    else if (c === 24) delete s.underline
    else if (c === 27) delete s.inverse
    else if (c === 29) delete s.strike
    else if (c >= 30 && c <= 37) s.fg = PALETTE[c - 30]
    else if (c === 39) delete s.fg
    else if (c >= 40 && c <= 47) s.bg = PALETTE[c - 40]
    else if (c === 49) delete s.bg
    else if (c >= 90 && c <= 97) s.fg = PALETTE[c - 90 + 8]
    else if (c >= 100 && c <= 107) s.bg = PALETTE[c - 100 + 8]
    else if (c === 38 || c === 48) {
      const key = c === 38 ? 'fg' : 'bg'
      if (codes[i + 1] === 5 && Number.isFinite(codes[i + 2])) {
        s[key] = color256(Math.max(0, Math.min(255, codes[i + 2])))
        i += 2
      } else if (codes[i + 1] === 2 && codes.length >= i + 5) {
        const [r, g, b] = codes.slice(i + 2, i + 5).map(x => Math.max(0, Math.min(255, x | 0)))
        s[key] = `rgb(${r},${g},${b})`
        i += 4
      }
    }
  }
  return Object.keys(s).length ? s : EMPTY
}

const visible = text =>
  text.replace(CONTROL, ch =>
    ch === '\t' ? ch : String.fromCharCode(ch.charCodeAt(0) === 0x7f ? 0x2421 : 0x2400 + ch.charCodeAt(0))
  )

/**
 * Split one line into [{text, style}] segments. `style` is {} or has fg/bg colour strings
 * and boolean bold/dim/italic/underline/inverse/strike.
 */
export function parseAnsi(line) {
  if (line.indexOf('\x1b') === -1) return [{ text: visible(line), style: EMPTY }]
  const out = []
  let style = EMPTY
  let last = 0
  SEQUENCE.lastIndex = 0
  let m
  // biome-ignore lint/suspicious/noAssignInExpressions: the usual exec loop
  while ((m = SEQUENCE.exec(line)) !== null) {
    if (m.index > last) out.push({ text: visible(line.slice(last, m.index)), style })
    if (m[2] === 'm') style = applySgr(style, m[1])
    last = SEQUENCE.lastIndex
    if (m[0] === '') SEQUENCE.lastIndex++ // defensive: never loop on an empty match
  }
  if (last < line.length) out.push({ text: visible(line.slice(last)), style })
  return out.filter(seg => seg.text !== '')
}

/** The line without any escape sequence (for search, filters and downloads). */
export function stripAnsi(line) {
  return line.indexOf('\x1b') === -1 ? line : line.replace(SEQUENCE, '')
}
