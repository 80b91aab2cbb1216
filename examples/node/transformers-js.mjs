// Greedy generation with transformers.js from an onnxforge web bundle, fully offline.
// usage: node transformers-js.mjs BUNDLE DTYPE MAX_NEW_TOKENS PROMPT...
// prints one JSON object: {"dtype": ..., "results": [{"prompt": ..., "token_ids": [...]}], "load_s": ..., "tokens_per_s": ...}
import { AutoModelForCausalLM, AutoTokenizer, env } from "@huggingface/transformers";

const [bundle, dtype, maxNewTokens, ...prompts] = process.argv.slice(2);
env.allowRemoteModels = false;
env.allowLocalModels = true;

const started = performance.now();
const tokenizer = await AutoTokenizer.from_pretrained(bundle);
const model = await AutoModelForCausalLM.from_pretrained(bundle, { dtype, device: "cpu" });
const loadSeconds = (performance.now() - started) / 1000;

const results = [];
let newTokens = 0;
let generateSeconds = 0;
for (const prompt of prompts) {
  const inputs = tokenizer(prompt, { add_special_tokens: false });
  const promptLength = inputs.input_ids.dims[1];
  const start = performance.now();
  const output = await model.generate({ ...inputs, max_new_tokens: Number(maxNewTokens), do_sample: false,
                                        repetition_penalty: 1.0 });
  generateSeconds += (performance.now() - start) / 1000;
  const ids = output.tolist()[0].slice(promptLength).map(Number);
  newTokens += ids.length;
  results.push({ prompt, token_ids: ids });
}
console.log(JSON.stringify({ dtype, results, load_s: loadSeconds, tokens_per_s: newTokens / generateSeconds }));
