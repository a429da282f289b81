// Line-based JSON driver for realtime-js / supabase-js, used by tests/server/*.py.
//
// stdin:  one JSON command per line: {"req": <id>, "cmd": "<name>", ...args}
// stdout: one JSON object per line: replies {"ev":"reply","req":<id>,"ok":true,...} or
//         {"ev":"reply","req":<id>,"ok":false,"error":"..."}, and events
//         {"ev":"broadcast"|"presence"|"system"|"status"|"heartbeat"|"postgres_changes", "client":..., ...}
// Run with: node --experimental-websocket driver.mjs   (Node 20 has no global WebSocket otherwise)

import { createInterface } from 'node:readline'
import { RealtimeClient } from '@supabase/realtime-js'
import { createClient } from '@supabase/supabase-js'

const clients = new Map() // id -> RealtimeClient
const channels = new Map() // `${client}|${topic}` -> RealtimeChannel

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function bufferToJson(value) {
  if (value instanceof ArrayBuffer) {
    return { __binary__: Buffer.from(value).toString('base64') }
  }
  return value
}

function fromWire(value) {
  if (value && typeof value === 'object' && typeof value.__binary__ === 'string') {
    const buf = Buffer.from(value.__binary__, 'base64')
    return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)
  }
  return value
}

const commands = {
  async connect({ client, url, apikey, vsn, params, heartbeatIntervalMs, supabase, timeout }) {
    let rt
    if (supabase) {
      const sb = createClient(url, apikey, {
        realtime: { heartbeatIntervalMs: heartbeatIntervalMs ?? 25000, timeout: timeout ?? 10000 },
      })
      rt = sb.realtime
    } else {
      const opts = { params: { apikey, ...(params ?? {}) }, timeout: timeout ?? 10000 }
      if (vsn) opts.vsn = vsn
      if (heartbeatIntervalMs) opts.heartbeatIntervalMs = heartbeatIntervalMs
      rt = new RealtimeClient(url, opts)
    }
    rt.onHeartbeat((status, latency) => out({ ev: 'heartbeat', client, status, latency: latency ?? null }))
    clients.set(client, rt)
    rt.connect()
    return {}
  },

  async channel({ client, topic, config, listen }) {
    const rt = clients.get(client)
    const ch = rt.channel(topic, { config: config ?? {} })
    const l = listen ?? {}
    for (const event of l.broadcast ?? []) {
      ch.on('broadcast', { event }, (msg) =>
        out({ ev: 'broadcast', client, topic, event: msg.event, payload: bufferToJson(msg.payload), meta: msg.meta ?? null })
      )
    }
    if (l.presence) {
      ch.on('presence', { event: 'sync' }, () => out({ ev: 'presence', client, topic, kind: 'sync', state: ch.presenceState() }))
      ch.on('presence', { event: 'join' }, ({ key, newPresences }) =>
        out({ ev: 'presence', client, topic, kind: 'join', key, presences: newPresences })
      )
      ch.on('presence', { event: 'leave' }, ({ key, leftPresences }) =>
        out({ ev: 'presence', client, topic, kind: 'leave', key, presences: leftPresences })
      )
    }
    for (const binding of l.postgres_changes ?? []) {
      ch.on('postgres_changes', binding, (payload) => out({ ev: 'postgres_changes', client, topic, payload }))
    }
    ch.on('system', {}, (payload) => out({ ev: 'system', client, topic, payload }))
    channels.set(`${client}|${topic}`, ch)
    ch.subscribe((status, err) => out({ ev: 'status', client, topic, status, error: err ? String(err.message ?? err) : null }))
    return {}
  },

  async send({ client, topic, event, payload, type }) {
    const ch = channels.get(`${client}|${topic}`)
    const result = await ch.send({ type: type ?? 'broadcast', event, payload: fromWire(payload) })
    return { result }
  },

  // send() on a channel that never subscribed: realtime-js falls back to POST /api/broadcast
  async sendUnjoined({ client, topic, event, payload }) {
    const ch = clients.get(client).channel(topic)
    const result = await ch.send({ type: 'broadcast', event, payload })
    return { result }
  },

  async httpSend({ client, topic, event, payload }) {
    const ch = channels.get(`${client}|${topic}`)
    const result = await ch.httpSend(event, fromWire(payload))
    return { result }
  },

  async track({ client, topic, payload }) {
    const ch = channels.get(`${client}|${topic}`)
    return { result: await ch.track(payload) }
  },

  async untrack({ client, topic }) {
    const ch = channels.get(`${client}|${topic}`)
    return { result: await ch.untrack() }
  },

  async presenceState({ client, topic }) {
    return { state: channels.get(`${client}|${topic}`).presenceState() }
  },

  async setAuth({ client, token }) {
    await clients.get(client).setAuth(token)
    return {}
  },

  async unsubscribe({ client, topic }) {
    const ch = channels.get(`${client}|${topic}`)
    const result = await ch.unsubscribe()
    return { result }
  },

  async state({ client, topic }) {
    const ch = channels.get(`${client}|${topic}`)
    return { state: ch.state, connected: clients.get(client).isConnected() }
  },

  async disconnect({ client }) {
    const rt = clients.get(client)
    await rt.removeAllChannels()
    rt.disconnect()
    clients.delete(client)
    return {}
  },
}

const rl = createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (e) {
    out({ ev: 'reply', req: null, ok: false, error: `bad command line: ${e}` })
    return
  }
  const fn = commands[msg.cmd]
  if (!fn) {
    out({ ev: 'reply', req: msg.req, ok: false, error: `unknown command ${msg.cmd}` })
    return
  }
  try {
    const result = await fn(msg)
    out({ ev: 'reply', req: msg.req, ok: true, ...result })
  } catch (e) {
    out({ ev: 'reply', req: msg.req, ok: false, error: String(e?.stack ?? e) })
  }
})
rl.on('close', () => {
  for (const rt of clients.values()) rt.disconnect()
  setTimeout(() => process.exit(0), 50)
})
out({ ev: 'ready' })
