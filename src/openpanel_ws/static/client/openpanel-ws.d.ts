// Types of openpanel-ws.js (the OpenPanel WebSocket API 1.3.0 client).

export const VERSION: string

export type Endpoint = 'containers' | 'logs' | 'metrics' | 'terminal'
export type LinkState = 'connecting' | 'authenticated' | 'reconnecting' | 'closed'

export interface RateLimit { count: number; windowMs: number }

export interface BackoffOptions {
  /** ms, default 1000 */
  base?: number
  /** ms, default 30000 */
  cap?: number
  /** null (default): retry forever */
  maxAttempts?: number | null
  random?: () => number
}

export interface ClientOptions {
  /** ws://host:port (or http(s)://...); default: ws(s):// + location.host */
  url?: string
  token?: string
  /** Called before every (re)auth, and before the token's `exp`; wins over `token`. */
  getToken?: () => string | Promise<string>
  /** A WebSocket constructor (Node < 22, tests); default globalThis.WebSocket. */
  WebSocket?: { new (url: string): WebSocket }
  backoff?: BackoffOptions
  rateLimits?: Partial<Record<Endpoint, RateLimit>>
  /** ms without any message before a connection counts as dead (default: 2.5 heartbeats). */
  idleTimeout?: number | null
}

export class OpenPanelError extends Error {
  constructor (code: string, message: string, extra?: { containerId?: string; closeCode?: number; raw?: object })
  /** The server's error code, or CONNECTION_CLOSED, CONNECTION_LOST, SUBSCRIPTION_ENDED,
   * TERMINAL_ERROR, TOKEN_ERROR, NO_WEBSOCKET, CLIENT_CLOSED. */
  code: string
  containerId?: string
  closeCode?: number
  raw?: object
}

export interface LogLine {
  containerId: string
  timestamp: string
  stream: 'stdout' | 'stderr' | string
  data: string
}

export interface StatsMessage {
  type: 'stats'
  containerId: string
  timestamp: string
  stats: {
    cpu: { usage: number; percent: number }
    memory: { usage: number; limit: number; percent: number }
    network: { rx_bytes: number; tx_bytes: number }
  }
}

export interface MetricsMessage {
  type: 'metrics'
  timestamp: string
  system: {
    cpu: { usage: number; cores: number }
    memory: { total: number; used: number; free: number; percent: number }
    disk: { total: number; used: number; free: number; percent: number }
    network: { rx_bytes: number; tx_bytes: number }
  }
}

export interface DockerEventMessage {
  type: 'docker_event'
  timestamp: string
  event: { Type: string; Action: string; Actor: { ID: string; Attributes: Record<string, string> }; [k: string]: unknown }
}

export interface SystemLogMessage {
  type: 'system_log'
  timestamp: string
  level: 'debug' | 'info' | 'warning' | 'error'
  message: string
  source: string
}

export type EventMessage = DockerEventMessage | SystemLogMessage

export interface Subscription {
  unsubscribe (): void
  containerId?: string
}

export type ErrorCallback = (err: OpenPanelError) => void

export interface StateDetail { endpoint: Endpoint; state: LinkState }

export interface TerminalOptions {
  shell?: string
  cols?: number
  rows?: number
  /** Extension: run this program instead of `shell`. */
  command?: string[]
  /** Extension: false = no TTY, output then names its `stream`. */
  tty?: boolean
  /** Extension: false = the program gets no standard input. */
  stdin?: boolean
}

export class TerminalHandle extends EventTarget {
  readonly containerId: string
  sessionId?: string
  exitCode?: number | null
  reason?: string
  opened: boolean
  closed: boolean
  /** Keystrokes or a paste; coalesced when the client's rate-limit mirror runs low. */
  write (data: string): void
  resize (cols: number, rows: number): void
  /** close_terminal; 'closed' follows. */
  close (): void
  /** Extension: end the program's input (with a TTY: types Ctrl-D). */
  eof (): void
  containerLost: boolean
  addEventListener (type: 'opened', listener: (ev: CustomEvent<{ sessionId: string; containerId: string }>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: 'output', listener: (ev: CustomEvent<{ data: string; stream?: 'stdout' | 'stderr' }>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: 'closed', listener: (ev: CustomEvent<{ reason: string; exitCode: number | null | undefined; containerLost?: boolean }>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: 'error', listener: (ev: CustomEvent<OpenPanelError>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: 'resuming', listener: (ev: CustomEvent<{ closeCode?: number }>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: 'resumed', listener: (ev: CustomEvent<{ sessionId: string; lostBytes: number }>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void
  /** `seq` of the last output received (gateways with terminal sessions). */
  lastSeq?: number
  /** True while the connection is down and the session is being reattached. */
  resuming: boolean
  resumes: number
}

/** ms a terminal keeps trying to reattach its session. */
export const RESUME_TIMEOUT: number

export class OpenPanelClient extends EventTarget {
  constructor (options?: ClientOptions)
  readonly url: string
  subscribeLogs (containerId: string, opts: { tail?: number | 'all'; since?: string | number } | undefined,
    onLine: (line: LogLine) => void, onError?: ErrorCallback): Subscription
  subscribeLogs (containerId: string, onLine: (line: LogLine) => void, onError?: ErrorCallback): Subscription
  subscribeStats (containerId: string, opts: { interval?: number } | undefined,
    onStats: (msg: StatsMessage) => void, onError?: ErrorCallback): Subscription
  subscribeStats (containerId: string, onStats: (msg: StatsMessage) => void, onError?: ErrorCallback): Subscription
  subscribeMetrics (opts: { interval?: number } | undefined, onMetrics: (msg: MetricsMessage) => void,
    onError?: ErrorCallback): Subscription
  subscribeMetrics (onMetrics: (msg: MetricsMessage) => void, onError?: ErrorCallback): Subscription
  subscribeEvents (opts: { filters?: Record<string, string[]>; since?: string | number } | undefined,
    onEvent: (msg: EventMessage) => void, onError?: ErrorCallback): Subscription
  subscribeEvents (onEvent: (msg: EventMessage) => void, onError?: ErrorCallback): Subscription
  openTerminal (containerId: string, opts?: TerminalOptions): TerminalHandle
  close (): void
  addEventListener (type: 'state', listener: (ev: CustomEvent<StateDetail>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: 'error', listener: (ev: CustomEvent<OpenPanelError>) => void, options?: boolean | AddEventListenerOptions): void
  addEventListener (type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void
}

export default OpenPanelClient

// --- the pure parts (exported for tests and custom transports) ---

export const CLOSE: Readonly<Record<'NORMAL' | 'GOING_AWAY' | 'ABNORMAL' | 'POLICY_VIOLATION' | 'MESSAGE_TOO_BIG' |
  'TRY_AGAIN_LATER' | 'AUTH_FAILED' | 'HEARTBEAT_TIMEOUT', number>>
export const SERVER_RATE_LIMITS: Readonly<Record<Endpoint, RateLimit>>
export const MAX_INPUT_CHARS: number
export function shouldReconnect (code: number | undefined | null): boolean
export function errorFromMessage (msg: object): OpenPanelError
export function gatewayUrl (base: string, endpoint: Endpoint): string
export function defaultUrl (): string
export function tokenExpiry (token: string): number | null
export function refreshDelay (exp: number, nowMs: number): number
export function mirrorLimit (limit: RateLimit, margin?: number): RateLimit
export function parseTimestampNanos (text: string): bigint | null
export function rfc3339FromNanos (nanos: bigint): string

export class Backoff {
  constructor (opts?: BackoffOptions)
  attempts: number
  nextDelay (): number | null
  reset (): void
}

export class TokenBucket {
  constructor (limit: RateLimit, now: number)
  tokens: number
  tryTake (now: number): boolean
}

export class Outbox {
  constructor (limit: RateLimit, now: number)
  readonly length: number
  pushFree (message: object): void
  push (item: object | { input: string }): void
  pop (now: number): [object | null, number]
  clear (): void
}

export class LogCursor {
  lastNs: bigint | null
  dropped: number
  accept (timestamp: string, stream: string, data: string): boolean
  resume (): { since?: string; tail?: 'all' }
}

export class EventCursor {
  newestNs: bigint | null
  dropped: number
  accept (msg: object): boolean
  resumeSince (): string | undefined
}
