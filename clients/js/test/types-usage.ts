// Compiled (not run) by tests/unit/test_js_client.py with `tsc --noEmit --strict`
// against the generated .d.ts: the public API keeps real types, not `any`.
import OpenPanelClientDefault, {
  Backoff,
  CLOSE,
  ClientConnection,
  type ConnectionAction,
  type LogLine,
  OpenPanelClient,
  type OpenPanelError,
  type StatsMessage,
  type TerminalHandle,
  tokenExpiry
} from '../openpanel-ws.js'

const client: OpenPanelClient = new OpenPanelClientDefault({ url: 'ws://h:1', getToken: async () => 't' })
const line = (l: LogLine): string => l.data + l.stream + l.containerId
const sub = client.subscribeLogs(
  'web',
  { tail: 10 },
  l => {
    line(l)
  },
  (e: OpenPanelError) => e.code
)
client.subscribeLogs('web', l => {
  line(l)
})
const cid: string | undefined = sub.containerId
sub.unsubscribe()
client.subscribeStats('web', (m: StatsMessage) => {
  const p: number = m.stats.cpu.percent
  return p
})
client.subscribeMetrics({ interval: 5 }, m => {
  const used: number = m.system.memory.used
  return used
})
client.subscribeEvents(m => {
  if (m.type === 'docker_event') {
    const action: string = m.event.Action
    return action
  }
  const level: 'debug' | 'info' | 'warning' | 'error' = m.level
  return level
})
client.addEventListener('state', ev => {
  const s: string = ev.detail.state + ev.detail.endpoint
  return s
})
const term: TerminalHandle = client.openTerminal('web', { cols: 80, rows: 24, tty: false })
term.addEventListener('output', ev => {
  const d: string = ev.detail.data
  return d
})
term.addEventListener('resumed', ev => {
  const n: number = ev.detail.lostBytes
  return n
})
term.write('ls\n')
const exp: number | null = tokenExpiry('a.b.c')
const delay: number | null = new Backoff({ base: 10 }).nextDelay()
const code: number = CLOSE.AUTH_FAILED
const actions: ConnectionAction[] = new ClientConnection({
  url: 'ws://h:1/ws/logs',
  rateLimit: { count: 1, windowMs: 1 }
}).close()
for (const a of actions)
  if (a.kind === 'set-timer') {
    const ms: number = a.delay
    void ms
  }

// Wrong uses must not compile (they would if the types were `any`).
// @ts-expect-error a stats message has no `nope`
client.subscribeStats('web', m => m.stats.nope)
// @ts-expect-error the handler of a log line gets a LogLine, not a number
client.subscribeLogs('web', (l: number) => l)
// @ts-expect-error write takes a string
term.write(42)
// @ts-expect-error an unknown option
void new OpenPanelClient({ urll: 'x' })

export { cid, code, delay, exp }

client.subscribeHostStatus(m => {
  const where: string = `${m.host} ${m.state} ${m.error ?? ''}`
  return where
})
client.subscribeLogs('web', { host: 'prod-2' }, line => {
  const host: string | undefined = line.host
  return host
})
