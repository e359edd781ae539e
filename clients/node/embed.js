#!/usr/bin/env node
'use strict';
// Embed one or more texts with Aurea and print each vector's size and first components.
// Exits 1 with the gRPC status and its details when the call fails.

const { makeClient, authMetadata, deadlineIn, exitWithError, parseCommonArgs, dollars, formatUsage } =
  require('./aurea');

const USAGE = `usage: node embed.js [--target HOST:PORT] [--api-key KEY] [--model NAME]
                     [--timeout SECONDS] "text" ["text" ...]
  --target defaults to $AUREA_TARGET, else 127.0.0.1:50051; --api-key to $AUREA_API_KEY.`;

const { values, positionals } = parseCommonArgs(USAGE, { model: { type: 'string', default: '' } });
if (positionals.length === 0) {
  console.error(USAGE);
  process.exit(2);
}

const client = makeClient('InferenceService', values.target);
client.Embed(
  { model: values.model, inputs: positionals },
  authMetadata(values['api-key']),
  { deadline: deadlineIn(Number(values.timeout)) },
  (err, reply) => {
    if (err) exitWithError(err);
    for (const e of reply.embeddings) {
      const head = e.values.slice(0, 4).map((v) => v.toFixed(4)).join(', ');
      console.log(`embedding ${e.index}: dims=${e.values.length} [${head}, ...]`);
    }
    console.log(`usage: ${formatUsage(reply.usage)}`);
    console.log(
      `cost: ${reply.costNanos} nanos (${dollars(reply.costNanos)}) ` +
        `model=${reply.model} provider=${reply.provider}`,
    );
    client.close();
  },
);
