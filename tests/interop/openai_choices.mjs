// logit_bias, echo, n > 1 and best_of through the official `openai` npm
// client (issue 21). Exits non-zero on any failed check; TAP numbers start
// at FIRST so the output joins openai_client.mjs's.
// Usage: node openai_choices.mjs BASE_URL MODEL FIRST
import OpenAI from "openai";

const [baseURL, model, first] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused-on-loopback", maxRetries: 0, timeout: 60000 });
let failed = 0;
let n = Number(first ?? 1) - 1;
const start = n;

function check(cond, what) {
  n++;
  console.log(`${cond ? "ok" : "not ok"} ${n} - ${what}`);
  if (!cond) failed++;
}

async function expect400(fn, param, what) {
  try {
    await fn();
    check(false, `${what}: no error`);
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === 400 && e.param === param,
          `${what}: HTTP ${e.status} param ${e.param}: ${e.message}`);
  }
}

const prompt = "Hello, Baton";

// ---- logit_bias ----
// +100 forces a token, greedy or not: every generated token is its text
async function forced(id, extra = {}) {
  return client.completions.create({ model, prompt, max_tokens: 6, logprobs: 0, logit_bias: { [id]: 100 },
                                     ignore_eos: true, ...extra });
}
const fa = await forced(65, { temperature: 0 });
const fb = await forced(66, { temperature: 1, seed: 5 });
const ta = fa.choices[0].logprobs.tokens, tb = fb.choices[0].logprobs.tokens;
check(ta.length === 6 && ta.every((t) => t === ta[0]) && fa.choices[0].text === ta[0].repeat(6),
      `logit_bias +100 forces token 65 (greedy): ${JSON.stringify(fa.choices[0].text)}`);
check(tb.length === 6 && tb.every((t) => t === tb[0]) && tb[0] !== ta[0],
      `logit_bias +100 forces token 66 (temperature 1): ${JSON.stringify(fb.choices[0].text)}`);
// -100 bans: of two tokens both pushed up by +100, greedy takes one; with
// that one at -100 instead, the other comes
const both = await client.completions.create({ model, prompt, max_tokens: 1, temperature: 0,
                                               logit_bias: { 65: 100, 66: 100 } });
const winner = both.choices[0].text === ta[0] ? 65 : both.choices[0].text === tb[0] ? 66 : -1;
check(winner > 0, `logit_bias on two tokens: greedy takes one of them (${winner})`);
const loser = winner === 65 ? 66 : 65;
const banned = await client.completions.create({ model, prompt, max_tokens: 1, temperature: 0,
                                                 logit_bias: { [winner]: -100, [loser]: 100 } });
check(banned.choices[0].text === (loser === 65 ? ta[0] : tb[0]),
      `logit_bias -100 bans token ${winner}: token ${loser} comes instead`);
// streamed and chat
let st = "";
const fs = await client.completions.create({ model, prompt, max_tokens: 6, temperature: 0, ignore_eos: true,
                                             logit_bias: { 65: 100 }, stream: true });
for await (const ch of fs) st += ch.choices[0]?.text ?? "";
check(st === fa.choices[0].text, "logit_bias streamed equals the whole response");
const fc = await client.chat.completions.create({ model, max_tokens: 3, temperature: 0, logit_bias: { 65: 100 },
                                                  messages: [{ role: "user", content: "Hi!" }] });
check(fc.choices[0].message.content === ta[0].repeat(3), `chat logit_bias forces token 65`);
// the same request twice (temperature 1, a seed): the same text
const fb2 = await forced(66, { temperature: 1, seed: 5 });
check(fb2.choices[0].text === fb.choices[0].text, "logit_bias request reproducible");
await expect400(() => forced(1 << 30), "logit_bias", "logit_bias id outside the vocabulary");
await expect400(() => client.completions.create({ model, prompt, max_tokens: 2, logit_bias: { 5: 100.5 } }),
                "logit_bias", "logit_bias value 100.5");
await expect400(() => client.completions.create({ model, prompt, max_tokens: 2, logit_bias: { "-3": 1 } }),
                "logit_bias", "logit_bias key -3");
await expect400(() => client.completions.create({ model, prompt, max_tokens: 2, logit_bias: { 5: "x" } }),
                "logit_bias", "logit_bias value a string");
const many = {};
for (let i = 0; i < 301; i++) many[i] = 1;
await expect400(() => client.completions.create({ model, prompt, max_tokens: 2, logit_bias: many }),
                "logit_bias", "logit_bias with 301 entries");

// ---- echo ----
const plain = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0, ignore_eos: true,
                                                logprobs: 2 });
const echoed = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0, ignore_eos: true,
                                                 echo: true });
check(echoed.choices[0].text === prompt + plain.choices[0].text,
      `echo: the prompt, then the same completion (${JSON.stringify(echoed.choices[0].text)})`);
check(echoed.usage.prompt_tokens === plain.usage.prompt_tokens &&
      echoed.usage.completion_tokens === plain.usage.completion_tokens, "echo: usage unchanged");
let es = "";
const echoStream = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0, ignore_eos: true,
                                                     echo: true, stream: true });
for await (const ch of echoStream) es += ch.choices[0]?.text ?? "";
check(es === echoed.choices[0].text, "echo streamed equals the whole response");
const el = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0, ignore_eos: true,
                                             echo: true, logprobs: 2 });
const elp = el.choices[0].logprobs;
const np = el.usage.prompt_tokens;
check(elp.tokens.length === np + 5 && elp.token_logprobs[0] === null && elp.top_logprobs[0] === null &&
      elp.token_logprobs.slice(1).every((x) => typeof x === "number" && x <= 0) &&
      elp.top_logprobs.slice(1).every((d) => Object.keys(d).length >= 1 && Object.keys(d).length <= 2),
      `echo with logprobs: one entry per prompt and generated token, the first null (${JSON.stringify(elp.token_logprobs)})`);
check(el.choices[0].text === elp.tokens.join("") && el.choices[0].text.endsWith(prompt + plain.choices[0].text),
      "echo with logprobs: the text is the tokens end to end");
check(JSON.stringify(elp.token_logprobs.slice(np)) === JSON.stringify(plain.choices[0].logprobs.token_logprobs) &&
      JSON.stringify(elp.top_logprobs.slice(np)) === JSON.stringify(plain.choices[0].logprobs.top_logprobs),
      "echo with logprobs: the generated tokens' logprobs are those without echo");
check(elp.text_offset.every((o, i) => o === elp.tokens.slice(0, i).join("").length),
      "echo with logprobs: text_offset adds up over prompt and completion");
const els = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0, ignore_eos: true,
                                              echo: true, logprobs: 2, stream: true });
let esText = "", esLp = [], esTop = [];
for await (const ch of els) {
  esText += ch.choices[0]?.text ?? "";
  if (ch.choices[0]?.logprobs) {
    esLp.push(...ch.choices[0].logprobs.token_logprobs);
    esTop.push(...ch.choices[0].logprobs.top_logprobs);
  }
}
check(esText === el.choices[0].text && JSON.stringify(esLp) === JSON.stringify(elp.token_logprobs) &&
      JSON.stringify(esTop) === JSON.stringify(elp.top_logprobs),
      "echo with logprobs streamed equals the whole response");
// twice: the prompt logprobs are computed again, bit for bit
const el2 = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0, ignore_eos: true,
                                              echo: true, logprobs: 2 });
check(JSON.stringify(el2.choices[0].logprobs) === JSON.stringify(elp), "echo with logprobs reproducible");
await expect400(() => client.completions.create({ model, prompt, max_tokens: 2, echo: "yes" }), "echo",
                "echo a string");

// ---- n > 1 and best_of ----
// choice i's seed (docs/api.md): choice 0 keeps the request's, choice i > 0
// takes splitmix64 of seed + i * 0x9e3779b97f4a7c15
function choiceSeed(seed, i) {
  if (i === 0) return BigInt(seed);
  const M = (1n << 64n) - 1n;
  let z = (BigInt(seed) + BigInt(i) * 0x9e3779b97f4a7c15n) & M;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
  return z ^ (z >> 31n);
}
const seed = 1234;
const four = { model, prompt, max_tokens: 12, temperature: 1, seed, n: 4, ignore_eos: true };
const r1 = await client.completions.create(four);
const r2 = await client.completions.create(four);
const texts = r1.choices.map((c) => c.text);
check(r1.choices.length === 4 && r1.choices.every((c, i) => c.index === i && c.finish_reason === "length"),
      "n = 4: four choices, indexed 0..3");
check(new Set(texts).size === 4, `n = 4: four different texts (${JSON.stringify(texts)})`);
check(JSON.stringify(r2.choices.map((c) => c.text)) === JSON.stringify(texts), "n = 4 twice: the same four texts");
check(r1.usage.prompt_tokens === fa.usage.prompt_tokens && r1.usage.completion_tokens === 48,
      `n = 4: usage counts the prompt once and 4 x 12 tokens (${JSON.stringify(r1.usage)})`);
// each choice is what a request with its derived seed gives alone; the
// seed goes as JSON text (past 2^53 it is not a JS number)
const singles = [];
for (let i = 0; i < 4; i++) {
  const u = choiceSeed(seed, i);   // HTTP's seed is an int64: the same 64 bits
  const signed = u >= (1n << 63n) ? u - (1n << 64n) : u;
  const body = JSON.stringify({ ...four, n: 1, seed: 0 }).replace('"seed":0', `"seed":${signed}`);
  const res = await fetch(`${baseURL}/completions`, { method: "POST", body,
                                                       headers: { "Content-Type": "application/json" } });
  singles.push((await res.json()).choices[0].text);
}
check(JSON.stringify(singles) === JSON.stringify(texts),
      `choice i equals a single request with seed choiceSeed(seed, i) (${JSON.stringify(singles)})`);
// streamed: chunks carry the index; joined per index they are the texts
const joined = ["", "", "", ""];
const finishes = [null, null, null, null];
let usageChunk = null;
const st4 = await client.completions.create({ ...four, stream: true, stream_options: { include_usage: true } });
for await (const ch of st4) {
  for (const c of ch.choices) {
    joined[c.index] += c.text;
    if (c.finish_reason) finishes[c.index] = c.finish_reason;
  }
  if (ch.usage) usageChunk = ch.usage;
}
check(JSON.stringify(joined) === JSON.stringify(texts) && finishes.every((f) => f === "length"),
      "n = 4 streamed: the chunks of each index join into that choice, each with its finish_reason");
check(usageChunk && usageChunk.completion_tokens === 48, "n = 4 streamed: the usage chunk");
// chat
const chat4 = await client.chat.completions.create({ model, max_tokens: 6, temperature: 1, seed, n: 3,
                                                     messages: [{ role: "user", content: "Hi!" }] });
const chatJoined = ["", "", ""];
const cs4 = await client.chat.completions.create({ model, max_tokens: 6, temperature: 1, seed, n: 3, stream: true,
                                                   messages: [{ role: "user", content: "Hi!" }] });
for await (const ch of cs4) for (const c of ch.choices) chatJoined[c.index] += c.delta?.content ?? "";
check(chat4.choices.length === 3 && chat4.choices.every((c, i) => c.index === i && c.message.role === "assistant") &&
      JSON.stringify(chatJoined) === JSON.stringify(chat4.choices.map((c) => c.message.content)),
      "chat n = 3, streamed and not: the same three messages");
// logprobs per choice
const lp4 = await client.completions.create({ ...four, logprobs: 1 });
check(lp4.choices.every((c, i) => c.text === texts[i] && c.logprobs.tokens.length === 12),
      "n = 4 with logprobs: each choice has its own 12 entries");
// best_of: the n with the highest cumulative logprob of best_of choices
const bo = await client.completions.create({ ...four, n: 2, best_of: 4 });
const cumOf = lp4.choices.map((c) => c.logprobs.token_logprobs.reduce((a, b) => a + b, 0));
const order = [0, 1, 2, 3].sort((a, b) => cumOf[b] - cumOf[a] || a - b);
check(bo.choices.length === 2 && bo.choices[0].text === texts[order[0]] && bo.choices[1].text === texts[order[1]] &&
      bo.usage.completion_tokens === 48,
      `best_of 4, n 2: the two best of the four by cumulative logprob (${order.slice(0, 2)})`);
await expect400(() => client.completions.create({ ...four, n: 17 }), "n", "n over --max-choices");
await expect400(() => client.completions.create({ ...four, n: 2, best_of: 1 }), "best_of", "best_of < n");
await expect400(() => client.completions.create({ ...four, n: 1, best_of: 2, stream: true }), "best_of",
                "best_of > n streamed");

// a client that leaves mid-stream cancels every choice; the cluster serves on
const ac = new AbortController();
let got = 0;
try {
  const s = await client.completions.create({ ...four, max_tokens: 400, stream: true }, { signal: ac.signal });
  for await (const _ of s) if (++got === 6) ac.abort();
} catch (e) {
  if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
}
const after = await client.completions.create(four);
check(got >= 6 && got < 1600 && JSON.stringify(after.choices.map((c) => c.text)) === JSON.stringify(texts),
      `n = 4 aborted mid-stream (${got} chunks): the cluster still answers the same four texts`);

console.log(`# openai_choices: ${n - start} checks`);
process.exit(failed ? 1 : 0);
