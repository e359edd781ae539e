#!/usr/bin/env node
'use strict';
// Generate (or, with --stream, GenerateStream) one completion from Aurea and print it with its
// usage and cost. Exits 1 with the gRPC status and its details when the call fails.

const {
  makeClient,
  authMetadata,
  deadlineIn,
  exitWithError,
  parseCommonArgs,
  dollars,
  formatUsage,
} = require('./aurea');

const USAGE = `usage: node generate.js [--target HOST:PORT] [--api-key KEY] [--stream] [--model NAME]
                        [--max-tokens N] [--timeout SECONDS] "prompt"
  --target defaults to $AUREA_TARGET, else 127.0.0.1:50051; --api-key to $AUREA_API_KEY.`;

const { values, positionals } = parseCommonArgs(USAGE, {
  stream: { type: 'boolean', default: false },
  model: { type: 'string', default: '' },
  'max-tokens': { type: 'string', default: '0' },
});
if (positionals.length !== 1) {
  console.error(USAGE);
  process.exit(2);
}

const client = makeClient('InferenceService', values.target);
const request = { prompt: positionals[0], model: values.model, maxTokens: Number(values['max-tokens']) };
const options = { deadline: deadlineIn(Number(values.timeout)) };
const metadata = authMetadata(values['api-key']);

/** The closing lines: usage, then cost and where the text came from. */
function printSummary(final, extra) {
  console.log(`usage: ${formatUsage(final.usage)}`);
  console.log(
    `cost: ${final.costNanos} nanos (${dollars(final.costNanos)}) model=${final.model} ` +
      `provider=${final.provider} finish=${String(final.finishReason).replace(/^FINISH_REASON_/, '')} ` +
      `latency_ms=${final.latencyMs.toFixed(1)} ttft_ms=${final.timeToFirstTokenMs.toFixed(1)} ${extra}`,
  );
}

if (values.stream) {
  let deltas = 0;
  let final = null;
  // GenerateStream takes Generate's request, plus stream-only options (none set here).
  const call = client.GenerateStream({ request }, metadata, options);
  call.on('data', (event) => {
    // oneofs: true names the event that is set, so one switch covers every kind.
    switch (event.event) {
      case 'started':
        console.error(`[started] request_id=${event.started.requestId} model=${event.started.model}`);
        break;
      case 'fallback': {
        const f = event.fallback;
        console.error(`[fallback] ${f.fromModel} -> ${f.toModel} (${f.cause}: ${f.message})`);
        break;
      }
      case 'delta':
        deltas += 1;
        process.stdout.write(event.delta.text);
        break;
      case 'usage':
        break; // cumulative usage so far; the final event carries the totals
      case 'final':
        final = event.final;
        break;
    }
  });
  call.on('error', (err) => {
    if (deltas > 0) process.stdout.write('\n');
    exitWithError(err);
  });
  call.on('end', () => {
    process.stdout.write('\n');
    if (!final) {
      console.error('the stream ended without a final event');
      process.exit(1);
    }
    printSummary(final, `deltas=${deltas}`);
  });
} else {
  client.Generate(request, metadata, options, (err, reply) => {
    if (err) exitWithError(err);
    console.log(reply.text);
    const extra = `request_id=${reply.requestId} attempts=${reply.attempts} cache_hit=${reply.cacheHit}`;
    printSummary(reply, extra);
    client.close();
  });
}
