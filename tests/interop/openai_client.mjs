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

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
