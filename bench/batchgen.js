// Sends exactly `amount` batch POSTs (each `size` events) over loopback and prints one JSON
// summary. Modes: "tracking" (Footfall's batch: {"events": [...]}) and "segment" (a Segment
// batch: {"batch": [...]}, every message with a messageId of its own, so none is a repeat).
'use strict'
const autocannon = require('autocannon')

const [url, amount, connections, size, mode, auth] = [
  process.argv[2], Number(process.argv[3]), Number(process.argv[4] || 8),
  Number(process.argv[5] || 500), process.argv[6] || 'tracking', process.argv[7] || ''
]
if (!url || !amount) {
  console.error('usage: node batchgen.js URL AMOUNT [CONNECTIONS] [SIZE] [tracking|segment] [AUTH]')
  process.exit(2)
}
const EVENTS = ['visitor', 'bot_open', 'convo_started', 'message_sent', 'message_like', 'added_to_cart']
const IPS = 4096

// A body template per batch shape; "@@" is replaced by the request's number, so Segment
// message ids never repeat across requests.
function template (variant) {
  const items = []
  for (let i = 0; i < size; i++) {
    const n = variant * size + i
    const token = 'bench' + n.toString(36).padStart(8, '0') + (n % 2)
    if (mode === 'segment') {
      items.push(JSON.stringify({
        type: i % 5 === 0 ? 'page' : 'track',
        event: i % 3 === 0 ? 'Product Added' : 'Clicked Help',
        anonymousId: token,
        messageId: `m-@@-${i}`,
        timestamp: '2026-11-20T10:00:00.000Z',
        properties: { product_id: 'SKU-1', price: 12.5, text: 'where is my order?' },
        context: { ip: '203.0.113.9', userAgent: 'Mozilla/5.0 bench', page: { url: 'https://shop.test/p', path: '/p' } }
      }))
    } else {
      items.push(JSON.stringify({ event: EVENTS[n % EVENTS.length], token, data: { chatbot_id: 'bot-1', text: 'where is my order?' }, ab_test: true }))
    }
  }
  const body = mode === 'segment'
    ? `{"sentAt":"2026-11-20T10:00:01.000Z","batch":[${items.join(',')}]}`
    : `{"events":[${items.join(',')}]}`
  return body.split('@@')
}
const templates = [0, 1, 2, 3].map(template)
const run = Date.now().toString(36) + process.pid.toString(36)
let sent = 0

function nextRequest (req) {
  const n = sent++
  const parts = templates[n % templates.length]
  req.body = parts.length === 1 ? parts[0] : parts.join(run + '-' + n)
  req.headers = { 'content-type': 'application/json', 'x-forwarded-for': `10.78.${(n % IPS) >> 8}.${n & 255}` }
  if (auth) req.headers.authorization = auth
  return req
}

const started = process.hrtime.bigint()
const instance = autocannon({
  url, method: 'POST', amount, connections, pipelining: 1, timeout: 60,
  requests: [{ setupRequest: nextRequest }]
}, (error, result) => {
  if (error) {
    console.error(error)
    process.exit(1)
  }
  const elapsed = Number(lastAnswer - started) / 1e9
  const statuses = {}
  for (const [code, stats] of Object.entries(result.statusCodeStats || {})) statuses[code] = stats.count
  console.log(JSON.stringify({
    url,
    sent: result.requests.sent,
    duration_s: elapsed,
    requests_per_s: result.requests.total / elapsed,
    events_per_s: result.requests.total * size / elapsed,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    latency_ms: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max }
  }))
})
let lastAnswer = started
instance.on('response', () => { lastAnswer = process.hrtime.bigint() })
autocannon.track(instance, { renderProgressBar: false, renderResultsTable: false, renderLatencyTable: false })
