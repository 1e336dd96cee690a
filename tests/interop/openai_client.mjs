// Drives the router's OpenAI-compatible API with the official `openai`
// npm client (a real client nobody here wrote). Exits non-zero on the
// first failed check. Usage: node openai_client.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused-on-loopback", maxRetries: 0, timeout: 60000 });
let failed = 0;
let n = 0;

function check(cond, what) {
  n++;
  console.log(`${cond ? "ok" : "not ok"} ${n} - ${what}`);
  if (!cond) failed++;
}

async function expectError(fn, status, what) {
  try {
    await fn();
    check(false, `${what}: no error`);
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === status,
          `${what}: HTTP ${e.status} ${e.message}`);
  }
}

const models = await client.models.list();
check(models.data.some((m) => m.id === model), "models.list names the model");

const c = await client.completions.create({ model, prompt: "Hello, Baton", max_tokens: 8, temperature: 0 });
check(typeof c.choices[0].text === "string" && c.choices[0].text.length > 0, "completion has text");
check(["stop", "length"].includes(c.choices[0].finish_reason), `completion finish_reason ${c.choices[0].finish_reason}`);
check(c.usage.completion_tokens > 0 && c.usage.prompt_tokens > 0, "completion usage");

let streamed = "";
let finish = null;
let usage = null;
const cs = await client.completions.create({ model, prompt: "Hello, Baton", max_tokens: 8, temperature: 0,
                                             stream: true, stream_options: { include_usage: true } });
for await (const chunk of cs) {
  if (chunk.choices.length > 0) {
    streamed += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  if (chunk.usage) usage = chunk.usage;
}
check(streamed === c.choices[0].text, "streamed completion equals the whole one (greedy)");
check(finish === c.choices[0].finish_reason, "stream finish_reason");
check(usage && usage.completion_tokens === c.usage.completion_tokens, "stream usage chunk");

const chat = await client.chat.completions.create({
  model, max_tokens: 8, temperature: 0,
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi!" }],
});
check(chat.choices[0].message.role === "assistant" && chat.choices[0].message.content.length > 0,
      "chat completion has an assistant message");

let chatText = "";
const chatStream = await client.chat.completions.create({
  model, max_tokens: 8, temperature: 0, stream: true,
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi!" }],
});
for await (const chunk of chatStream) {
  chatText += chunk.choices[0]?.delta?.content ?? "";
}
check(chatText === chat.choices[0].message.content, "streamed chat equals the whole one (greedy)");

// logprobs through the official client: one per token, greedy chosen = top-1
const lc = await client.completions.create({ model, prompt: "Hello, Baton", max_tokens: 8, temperature: 0,
                                             logprobs: 2 });
const lp = lc.choices[0].logprobs;
check(lp && lp.tokens.length === lc.usage.completion_tokens && lp.token_logprobs.length === lp.tokens.length &&
      lp.top_logprobs.every((d) => Object.keys(d).length <= 2) && lp.token_logprobs.every((x) => x <= 0) &&
      lp.token_logprobs.every((x, i) => Math.max(...Object.values(lp.top_logprobs[i])) === x),
      `completion logprobs: one per token (${JSON.stringify(lp).slice(0, 80)})`);
let streamedLp = [];
const ls = await client.completions.create({ model, prompt: "Hello, Baton", max_tokens: 8, temperature: 0,
                                             logprobs: 2, stream: true });
for await (const chunk of ls) {
  if (chunk.choices.length > 0 && chunk.choices[0].logprobs) streamedLp.push(...chunk.choices[0].logprobs.token_logprobs);
}
check(JSON.stringify(streamedLp) === JSON.stringify(lp.token_logprobs), "streamed completion logprobs equal the whole ones");
const lchat = await client.chat.completions.create({
  model, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3,
  messages: [{ role: "user", content: "Hi!" }],
});
const content = lchat.choices[0].logprobs?.content ?? [];
check(content.length === lchat.usage.completion_tokens &&
      content.every((e) => e.logprob <= 0 && e.top_logprobs.length === 3 && e.top_logprobs[0].logprob === e.logprob &&
                     Array.isArray(e.bytes)),
      `chat logprobs: one per token, 3 alternatives (${JSON.stringify(content[0] ?? null).slice(0, 80)})`);
let chatLp = [];
const lcs = await client.chat.completions.create({
  model, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3, stream: true,
  messages: [{ role: "user", content: "Hi!" }],
});
for await (const chunk of lcs) {
  chatLp.push(...(chunk.choices[0]?.logprobs?.content ?? []));
}
check(JSON.stringify(chatLp) === JSON.stringify(content), "streamed chat logprobs equal the whole ones");
await expectError(() => client.chat.completions.create({ model, max_tokens: 4, logprobs: true, top_logprobs: 21,
                                                         messages: [{ role: "user", content: "x" }] }),
                  400, "top_logprobs 21");

await expectError(() => client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 4 }),
                  404, "unknown model");
await expectError(() => client.completions.create({ model, prompt: "x", max_tokens: 0 }), 400, "max_tokens 0");
await expectError(() => client.completions.create({ model, prompt: "", max_tokens: 4 }), 400, "empty prompt");
await expectError(() => client.completions.create({ model, prompt: "x", max_tokens: 5000 }), 400,
                  "max_tokens past the context");


// ---- SDK conventions (issue 15) ----
check(Math.abs(c.created - Date.now() / 1000) < 600, `completion created is the Unix time (${c.created})`);
check(Math.abs(chat.created - Date.now() / 1000) < 600, `chat created is the Unix time (${chat.created})`);
const m = await client.models.retrieve(model);
check(m.id === model && m.object === "model" && m.created > 1e9, `models.retrieve (${JSON.stringify(m)})`);
await expectError(() => client.models.retrieve("no-such-model"), 404, "models.retrieve of an unknown model");

// null means absent, for every field
const cn = await client.completions.create({
  model, prompt: "Hello, Baton", max_tokens: 4, temperature: null, top_p: null, seed: null, n: null, logprobs: null,
  stream: null, stream_options: null, presence_penalty: null, frequency_penalty: null, echo: null, best_of: null,
  stop: null, user: null, suffix: null, logit_bias: null,
});
check(cn.usage.completion_tokens > 0, "completion with null for every optional field");
const chn = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Hi!" }], max_tokens: 4, max_completion_tokens: 2,
  temperature: null, top_p: null, seed: null, n: null, logprobs: null, top_logprobs: null, stream: null,
  stream_options: null, stop: null, presence_penalty: null, frequency_penalty: null, tools: null, tool_choice: null,
  store: false, metadata: { team: "a" }, service_tier: "auto", parallel_tool_calls: false, modalities: ["text"],
  user: "u", response_format: { type: "text" },
});
check(chn.usage.completion_tokens <= 2,
      `chat with nulls and OpenAI's output-neutral fields; max_completion_tokens wins (${chn.usage.completion_tokens})`);
try {
  await client.chat.completions.create({ model, max_tokens: 4, messages: [{ role: "user", content: "x" }],
                                         response_format: { type: "json_schema", json_schema:
                                           { name: "x", schema: { type: "string", format: "email" } } } });
  check(false, "response_format with an unsupported keyword: no error");
} catch (e) {
  check(e.status === 400 && e.param === "response_format",
        `response_format with an unsupported keyword: 400, param ${e.param}`);
}

// errors known before a stream's first token are real statuses
await expectError(async () => {
  const s = await client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 4, stream: true });
  for await (const _ of s) { /* none */ }
}, 404, "streamed completion of an unknown model");
await expectError(async () => {
  const s = await client.chat.completions.create({ model, max_tokens: 4, stream: true,
                                                   messages: [{ role: "user", content: "w ".repeat(5000) }] });
  for await (const _ of s) { /* none */ }
}, 400, "streamed chat over the context");

async function stillServes(what) {
  const r = await client.completions.create({ model, prompt: "Hello, Baton", max_tokens: 4, temperature: 0 });
  check(r.usage.completion_tokens > 0, `the cluster still serves after ${what}`);
}

// the SDK's timeout: the request is abandoned; the router cancels it
const long = { model, prompt: "a long story", max_tokens: 900, ignore_eos: true };
try {
  await client.completions.create(long, { timeout: 300 });
  check(false, "timeout 300 ms: no error");
} catch (e) {
  check(e instanceof OpenAI.APIConnectionTimeoutError, `timeout 300 ms: ${e.constructor.name}`);
}
await stillServes("a client timeout");

// AbortController: a non-streamed request, then a stream after its first chunk
let ac = new AbortController();
setTimeout(() => ac.abort(), 300);
try {
  await client.completions.create(long, { signal: ac.signal });
  check(false, "abort: no error");
} catch (e) {
  check(e instanceof OpenAI.APIUserAbortError, `AbortController on a non-streamed request: ${e.constructor.name}`);
}
await stillServes("an aborted request");
ac = new AbortController();
let chunks = 0;
try {
  const s = await client.completions.create({ ...long, stream: true }, { signal: ac.signal });
  for await (const _ of s) {
    if (++chunks === 2) ac.abort();
  }
} catch (e) {
  if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
}
check(chunks >= 2 && chunks < 900, `AbortController mid-stream (${chunks} chunks)`);
await stillServes("an aborted stream");

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
