// Greedy generation on bare ONNX Runtime, driven only by an onnxforge bundle's manifest.json: the reference
// loop for a client in any language (ids in, ids out; tokenise with the bundle's tokenizer.json).
// BACKEND is `node` (onnxruntime-node, native) or `wasm` (onnxruntime-web's WebAssembly build, as in a browser).
// usage: node ort-client.mjs BACKEND BUNDLE GRAPH MAX_NEW_TOKENS PROMPT_IDS_JSON...
// prints one JSON object: {"graph": ..., "backend": ..., "results": [{"token_ids": [...]}], "load_s": ..., ...}
import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

const [backend, bundle, graphPath, maxNewTokens, ...promptsJson] = process.argv.slice(2);
const ort = await import(backend === "wasm" ? "onnxruntime-web" : "onnxruntime-node");
const manifest = JSON.parse(readFileSync(join(bundle, "manifest.json"), "utf8"));
const graph = manifest.graphs.find((g) => g.path === graphPath);
if (!graph) throw new Error(`${graphPath} is not a graph of ${bundle}: ${manifest.graphs.map((g) => g.path)}`);
const generation = JSON.parse(readFileSync(join(bundle, "generation_config.json"), "utf8"));
const stopIds = new Set([generation.eos_token_id ?? []].flat());

// the native binding reads the graph and its external data from disk; the WASM build is handed the bytes of both,
// under the file name the graph records (transformers.js does the same in a browser)
async function openSession() {
  const path = join(bundle, graph.path);
  if (backend !== "wasm") return ort.InferenceSession.create(path, { intraOpNumThreads: 2, logSeverityLevel: 3 });
  ort.env.wasm.numThreads = 1;
  const data = manifest.files.filter((f) => dirname(f.path) === dirname(graph.path)
                                            && basename(f.path).startsWith(`${basename(graph.path)}_data`));
  const externalData = data.map((f) => ({ path: basename(f.path), data: readFileSync(join(bundle, f.path)) }));
  return ort.InferenceSession.create(readFileSync(path), { executionProviders: ["wasm"], externalData,
                                                            logSeverityLevel: 3 });
}

const started = performance.now();
const session = await openSession();
const loadSeconds = (performance.now() - started) / 1000;

const inputNames = new Set(graph.inputs.map((input) => input.name));
const kv = graph.kv_cache;
if (!kv) throw new Error(`${graphPath} has no KV cache in the manifest: this loop needs a decoder graph with past inputs`);
const [kvHeads, headDim] = [kv.shape[1], kv.shape[3]];  // [batch, kv_heads, past_sequence_length, head_dim]
const kvType = kv.dtype === "float16" ? "float16" : "float32";
const emptyKv = () => new ort.Tensor(kvType, kvType === "float16" ? new Uint16Array(0) : new Float32Array(0),
                                     [1, kvHeads, 0, headDim]);
const int64 = (values, dims) => new ort.Tensor("int64", BigInt64Array.from(values.map(BigInt)), dims);

// float16 tensors hold their raw bits (Uint16Array) where the runtime has no Float16Array
function halfToFloat(bits) {
  const exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff, sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function argmaxLastRow(logits) {
  const [, length, vocab] = logits.dims;
  const data = logits.type === "float16" && logits.data instanceof Uint16Array
    ? Float32Array.from(logits.data.subarray((length - 1) * vocab), halfToFloat) : logits.data;
  const offset = data.length === vocab ? 0 : (length - 1) * vocab;
  let best = 0;
  for (let v = 1; v < vocab; v++) if (data[offset + v] > data[offset + best]) best = v;
  return best;
}

async function generate(promptIds) {
  let past = {};
  for (let layer = 0; layer < kv.layers; layer++) {
    past[`past_key_values.${layer}.key`] = emptyKv();
    past[`past_key_values.${layer}.value`] = emptyKv();
  }
  let tokens = promptIds;
  let seen = 0;
  const generated = [];
  while (generated.length < Number(maxNewTokens)) {
    const feeds = { input_ids: int64(tokens, [1, tokens.length]), ...past };
    const total = seen + tokens.length;
    if (inputNames.has("attention_mask")) feeds.attention_mask = int64(Array(total).fill(1), [1, total]);
    if (inputNames.has("position_ids")) {
      feeds.position_ids = int64(Array.from({ length: tokens.length }, (_, i) => seen + i), [1, tokens.length]);
    }
    const outputs = await session.run(feeds);
    const next = argmaxLastRow(outputs.logits);
    generated.push(next);
    if (stopIds.has(next)) break;
    past = {};
    for (let layer = 0; layer < kv.layers; layer++) {
      past[`past_key_values.${layer}.key`] = outputs[`present.${layer}.key`];
      past[`past_key_values.${layer}.value`] = outputs[`present.${layer}.value`];
    }
    seen = total;
    tokens = [next];
  }
  return generated;
}

const results = [];
let newTokens = 0;
const start = performance.now();
for (const json of promptsJson) {
  const ids = await generate(JSON.parse(json));
  newTokens += ids.length;
  results.push({ token_ids: ids });
}
const seconds = (performance.now() - start) / 1000;
console.log(JSON.stringify({ graph: graph.path, backend, results, load_s: loadSeconds,
                              tokens_per_s: newTokens / seconds }));
