'use strict';
// Shared helpers for the examples: load aurea.v1 from ../../protos at run time, build clients
// with an API key in metadata, and explain a failed call (status code, message, and the
// google.rpc details carried in `grpc-status-details-bin`).

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
const PROTO_FILES = ['admin', 'inference', 'infrastructure', 'ledger', 'router', 'task'].map(
  (name) => `aurea/v1/${name}.proto`,
);
// The protobuf JSON mapping of decoded messages: camelCase fields, 64-bit ints and enums as
// strings, unset fields filled with defaults, and the name of the set `oneof` member.
const LOAD_OPTIONS = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true };

let aureaV1;
/** The `aurea.v1` package: service client constructors such as `InferenceService`. */
function loadAurea() {
  if (!aureaV1) {
    const definition = protoLoader.loadSync(PROTO_FILES, { ...LOAD_OPTIONS, includeDirs: [PROTO_ROOT] });
    aureaV1 = grpc.loadPackageDefinition(definition).aurea.v1;
  }
  return aureaV1;
}

/** A client of `service` (e.g. 'InferenceService') at `target` over plaintext HTTP/2. */
function makeClient(service, target) {
  const Client = loadAurea()[service];
  if (!Client) throw new Error(`aurea.v1 has no service ${service}`);
  return new Client(target, grpc.credentials.createInsecure());
}

/** Call metadata carrying `authorization: Bearer KEY` when a key is given. */
function authMetadata(apiKey) {
  const md = new grpc.Metadata();
  if (apiKey) md.set('authorization', `Bearer ${apiKey}`);
  return md;
}

/** A deadline `seconds` from now (for the `deadline` call option). */
function deadlineIn(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

let rpcTypes;
function googleRpc() {
  // google/rpc/{status,error_details}.proto are vendored from googleapis (Apache-2.0);
  // protobufjs bundles the google/protobuf types they import.
  if (!rpcTypes) {
    rpcTypes = protobuf.loadSync(
      ['status.proto', 'error_details.proto'].map((f) => path.join(__dirname, 'protos', 'google', 'rpc', f)),
    );
  }
  return rpcTypes;
}

/** Decode `grpc-status-details-bin` of a failed call to google.rpc.Status with its details
 * unpacked: `{code, message, details: [{type: 'google.rpc.BadRequest', ...fields}]}`, or null. */
function statusDetails(err) {
  const raw = err && err.metadata ? err.metadata.get('grpc-status-details-bin')[0] : undefined;
  if (!raw) return null;
  const root = googleRpc();
  const status = root.lookupType('google.rpc.Status').decode(raw);
  const details = status.details.map((any) => {
    const url = any.type_url || any.typeUrl || ''; // protobufjs's bundled Any keeps snake_case
    const type = url.slice(url.lastIndexOf('/') + 1);
    let Type;
    try {
      Type = root.lookupType(type);
    } catch {
      return { type }; // a detail type this client does not know
    }
    return { type, ...Type.toObject(Type.decode(any.value), LOAD_OPTIONS) };
  });
  return { code: status.code, message: status.message, details };
}

/** Lines explaining a failed call: `CODE_NAME: message`, then one line per known detail. */
function describeError(err) {
  if (typeof err.code !== 'number') return [String(err && err.stack ? err.stack : err)];
  const lines = [`${grpc.status[err.code] || err.code}: ${err.details || err.message}`];
  let status = null;
  try {
    status = statusDetails(err);
  } catch (decodeErr) {
    lines.push(`  (undecodable grpc-status-details-bin: ${decodeErr.message})`);
  }
  for (const d of status ? status.details : []) {
    switch (d.type) {
      case 'google.rpc.ErrorInfo':
        lines.push(`  reason: ${d.reason} (domain ${d.domain})`);
        break;
      case 'google.rpc.BadRequest':
        for (const v of d.fieldViolations) lines.push(`  field ${v.field}: ${v.description}`);
        break;
      case 'google.rpc.RetryInfo': {
        const delay = d.retryDelay || {};
        lines.push(`  retry after: ${Number(delay.seconds || 0) + (delay.nanos || 0) / 1e9}s`);
        break;
      }
      case 'google.rpc.QuotaFailure':
        for (const v of d.violations) lines.push(`  quota ${v.subject}: ${v.description}`);
        break;
      default:
        lines.push(`  detail: ${d.type}`);
    }
  }
  const requestId = err.metadata ? err.metadata.get('x-request-id')[0] : undefined;
  if (requestId) lines.push(`  request id: ${requestId}`);
  return lines;
}

/** Print why a call failed to stderr and exit non-zero. */
function exitWithError(err) {
  for (const line of describeError(err)) console.error(line);
  process.exit(1);
}

/** Read `--target`/`--api-key` (else AUREA_TARGET/AUREA_API_KEY) plus `extra` options. */
function parseCommonArgs(usage, extra = {}) {
  const { parseArgs } = require('node:util');
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        target: { type: 'string', default: process.env.AUREA_TARGET || '127.0.0.1:50051' },
        'api-key': { type: 'string', default: process.env.AUREA_API_KEY || '' },
        timeout: { type: 'string', default: '60' },
        help: { type: 'boolean', short: 'h', default: false },
        ...extra,
      },
    });
  } catch (err) {
    console.error(`${err.message}\n${usage}`);
    process.exit(2);
  }
  if (parsed.values.help) {
    console.log(usage);
    process.exit(0);
  }
  return parsed;
}

/** Nano-dollars (a decimal string) as dollars. */
function dollars(nanos) {
  return `$${(Number(nanos) / 1e9).toFixed(9)}`;
}

/** One line summarizing a Usage message. */
function formatUsage(usage) {
  const u = usage || {};
  const source = String(u.source || '').replace(/^USAGE_SOURCE_/, '').toLowerCase();
  return (
    `input_tokens=${u.inputTokens} cached_input_tokens=${u.cachedInputTokens} ` +
    `output_tokens=${u.outputTokens} reasoning_tokens=${u.reasoningTokens} source=${source}`
  );
}

module.exports = {
  grpc,
  loadAurea,
  makeClient,
  authMetadata,
  deadlineIn,
  statusDetails,
  describeError,
  exitWithError,
  parseCommonArgs,
  dollars,
  formatUsage,
};
