// tests/serve/llamacpp_run.mjs - load a GGUF file with llama.cpp (node-llama-cpp, offline,
// CPU) and print its tokenization of PROMPT and N greedy tokens after it, as JSON lines.
// usage: node llamacpp_run.mjs FILE.gguf PROMPT N   (node-llama-cpp resolvable from cwd)
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
const [,, path, prompt, n] = process.argv;
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.warn});
const model = await llama.loadModel({modelPath: path});
const toks = model.tokenize(prompt);
console.log(JSON.stringify({tokens: Array.from(toks)}));
const context = await model.createContext({contextSize: 128});
const seq = context.getSequence();
const out = [];
for await (const t of seq.evaluate(toks, {temperature: 0})) {
  out.push(t);
  if (out.length >= Number(n)) break;
}
console.log(JSON.stringify({generated: out, text: model.detokenize(out)}));
process.exit(0);
