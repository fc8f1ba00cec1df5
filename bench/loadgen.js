// Sends exactly `amount` single-event POSTs over loopback and prints one JSON summary.
// Every request completes (no cut-off at a deadline), so the count of 200 answers is exact.
'use strict'
const autocannon = require('autocannon')

const [url, amount, connections] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] || 50)]
if (!url || !amount) {
  console.error('usage: node loadgen.js URL AMOUNT [CONNECTIONS]')
  process.exit(2)
}
const EVENTS = ['visitor', 'bot_open', 'convo_started', 'message_sent', 'message_like', 'added_to_cart']
const DISTINCT = 65536

// Bodies and headers are built up front, so per request the generator only picks one.
// Behind the trusted loopback proxy each request comes "from" one of DISTINCT client
// IPs: every IP stays far below the per-IP limit while the limiter still does its work.
const bodies = []
const headers = []
for (let n = 0; n < DISTINCT; n++) {
  const token = 'bench' + n.toString(36).padStart(8, '0') + (n % 2)
  bodies.push(JSON.stringify({ event: EVENTS[n % EVENTS.length], token, data: { chatbot_id: 'bot-1', text: 'where is my order?' }, ab_test: true }))
  headers.push({ 'content-type': 'application/json', 'x-forwarded-for': `10.77.${n >> 8}.${n & 255}` })
}
let sent = 0

function nextRequest (req) {
  const n = sent++ % DISTINCT
  req.headers = headers[n]
  req.body = bodies[n]
  return req
}

const started = process.hrtime.bigint()
const instance = autocannon({
  url,
  method: 'POST',
  amount,
  connections,
  pipelining: 1,
  timeout: 30,
  requests: [{ setupRequest: nextRequest }]
}, (error, result) => {
  if (error) {
    console.error(error)
    process.exit(1)
  }
  // autocannon notices completion on a 1 s tick; time the answers themselves instead.
  const elapsed = Number(lastAnswer - started) / 1e9
  const statuses = {}
  for (const [code, stats] of Object.entries(result.statusCodeStats || {})) statuses[code] = stats.count
  console.log(JSON.stringify({
    url,
    sent: result.requests.sent,
    duration_s: elapsed,
    requests_per_s: result.requests.total / elapsed,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    latency_ms: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max }
  }))
})
let lastAnswer = started
instance.on('response', () => { lastAnswer = process.hrtime.bigint() })
autocannon.track(instance, { renderProgressBar: false, renderResultsTable: false, renderLatencyTable: false })
