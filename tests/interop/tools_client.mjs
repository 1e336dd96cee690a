// Tool calling through the official `openai` npm client on the built-in
// random-weight model: tool_choice "required" and a named function,
// streamed and not, several seeds: the call parses and its arguments
// validate against the function's schema every time; the SDK's stream
// helper assembles the same call; the tool's result sent back as a `tool`
// message is accepted and answered; bad tools are a 400 naming the field.
// Usage: node tools_client.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused-on-loopback", maxRetries: 0, timeout: 120000 });
let failed = 0;
let n = 0;

function check(cond, what) {
  n++;
  console.log(`${cond ? "ok" : "not ok"} ${n} - ${what}`);
  if (!cond) failed++;
}

const weather = {
  type: "object",
  properties: {
    city: { type: "string", minLength: 1, maxLength: 20 },
    unit: { enum: ["celsius", "fahrenheit"] },
    days: { type: "integer", minimum: 1, maximum: 7 },
  },
  required: ["city", "unit", "days"],
  additionalProperties: false,
};
const clock = { type: "object", properties: { tz: { type: "string", pattern: "^[A-Z][a-z]{1,10}/[A-Z][a-z]{1,10}$" } },
                required: ["tz"] };
const tools = [
  { type: "function", function: { name: "get_weather", description: "Weather forecast", parameters: weather } },
  { type: "function", function: { name: "get_time", description: "Time in a zone", parameters: clock } },
];
const schemas = { get_weather: weather, get_time: clock };

// null when args (a JSON string) validate against the tool's schema
function invalid(name, args) {
  const s = schemas[name];
  if (!s) return `unknown tool ${name}`;
  let v;
  try {
    v = JSON.parse(args);
  } catch (e) {
    return `arguments do not parse: ${e.message}`;
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return "arguments are not an object";
  for (const r of s.required) if (!(r in v)) return `lacks ${r}`;
  for (const [k, x] of Object.entries(v)) {
    const p = s.properties[k];
    if (!p) return `extra property ${k}`;
    if (p.enum && !p.enum.includes(x)) return `${k} not in the enum`;
    if (p.type === "string") {
      if (typeof x !== "string") return `${k} not a string`;
      const len = [...x].length;
      if (("minLength" in p && len < p.minLength) || ("maxLength" in p && len > p.maxLength)) return `${k} length`;
      if (p.pattern && !new RegExp(p.pattern, "u").test(x)) return `${k} does not match the pattern`;
    }
    if (p.type === "integer" && (!Number.isInteger(x) || x < p.minimum || x > p.maximum)) return `${k} out of range`;
  }
  return null;
}

const messages = [{ role: "system", content: "Use the tools." }, { role: "user", content: "Weather in Paris?" }];
const named = { type: "function", function: { name: "get_time" } };

for (const [choice, label] of [["required", "required"], [named, "named get_time"]]) {
  for (const seed of [1, 2, 3]) {
    const req = { model, messages, tools, tool_choice: choice, max_tokens: 300, seed, temperature: 0.9 };
    const whole = await client.chat.completions.create(req);
    const c = whole.choices[0];
    const calls = c.message.tool_calls ?? [];
    const call = calls[0];
    const why = call ? invalid(call.function.name, call.function.arguments) : "no call";
    check(c.finish_reason === "tool_calls" && c.message.content === null && calls.length === 1 &&
          call.type === "function" && /^call_[0-9a-f]{24}$/.test(call.id) && why === null &&
          (choice === "required" || call.function.name === "get_time"),
          `${label} seed ${seed}: ${c.finish_reason}, ${call?.function.name}(${call?.function.arguments}) ${why ?? "valid"}`);

    // streamed: delta.tool_calls, name first, then arguments pieces
    let name = null, args = "", id = null, finish = null, pieces = 0, order = true;
    const st = await client.chat.completions.create({ ...req, stream: true });
    for await (const chunk of st) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      for (const tc of ch.delta.tool_calls ?? []) {
        if (tc.id) id = tc.id;
        if (tc.function?.name) name = tc.function.name;
        if (tc.function?.arguments) {
          if (name === null) order = false;
          args += tc.function.arguments;
          pieces++;
        }
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    check(finish === "tool_calls" && order && id !== null && name === call?.function.name &&
          args === call?.function.arguments,
          `${label} seed ${seed} streamed: the same call in ${pieces} argument pieces, name first`);

    // the SDK's stream helper assembles it
    const helper = client.beta.chat.completions.stream(req);
    const fin = await helper.finalChatCompletion();
    const hc = fin.choices[0].message.tool_calls?.[0];
    check(hc?.function.name === call?.function.name && hc?.function.arguments === call?.function.arguments,
          `${label} seed ${seed}: the SDK stream helper assembles the call`);
  }
}

// auto (the default with tools): a random-weight model writes text, which
// is no call; the stream holds it until the end and then equals the whole
for (const seed of [5, 6]) {
  const req = { model, messages, tools, max_tokens: 24, seed };
  const whole = await client.chat.completions.create(req);
  let text = "", finish = null, calls = 0;
  for await (const chunk of await client.chat.completions.create({ ...req, stream: true })) {
    text += chunk.choices[0]?.delta?.content ?? "";
    calls += chunk.choices[0]?.delta?.tool_calls?.length ?? 0;
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  const c = whole.choices[0];
  check(typeof c.message.content === "string" && c.message.tool_calls === undefined &&
        text === c.message.content && finish === c.finish_reason && calls === 0,
        `auto seed ${seed}: text, streamed the same (${c.finish_reason}): ${text.slice(0, 40)}`);
}

// a round trip: the call and the tool's result in a second request
{
  const first = await client.chat.completions.create({ model, messages, tools, tool_choice: "required",
                                                       max_tokens: 300, seed: 7 });
  const asst = first.choices[0].message;
  const followUp = [...messages, asst,
                    { role: "tool", tool_call_id: asst.tool_calls[0].id, content: JSON.stringify({ temp: 21, sky: "clear" }) }];
  const second = await client.chat.completions.create({ model, messages: followUp, tools, max_tokens: 16, seed: 7 });
  const c = second.choices[0];
  check(["stop", "length", "tool_calls"].includes(c.finish_reason) &&
        (typeof c.message.content === "string" || Array.isArray(c.message.tool_calls)),
        `round trip: the tool result is accepted and answered (${c.finish_reason})`);
  const forced = await client.chat.completions.create({ model, messages: followUp, tools,
                                                        tool_choice: named, max_tokens: 300, seed: 8 });
  const fc = forced.choices[0].message.tool_calls?.[0];
  check(fc && invalid(fc.function.name, fc.function.arguments) === null,
        `round trip with a forced second call: ${fc?.function.arguments}`);
}

// errors: 400s naming the field
async function status(req) {
  try {
    await client.chat.completions.create(req);
    return { status: 200 };
  } catch (e) {
    return { status: e.status, param: e.param ?? e.error?.param, message: e.message };
  }
}
let e = await status({ model, messages, tools, tool_choice: { type: "function", function: { name: "nope" } } });
check(e.status === 400 && e.param === "tool_choice", `unknown tool in tool_choice: ${e.status} ${e.message}`);
e = await status({ model, messages, tool_choice: "required",
                   tools: [{ type: "function", function: { name: "f", parameters: { type: "object",
                     properties: { u: { type: "string", format: "uri" } } } } }] });
check(e.status === 400 && e.param === "tools" && /'format'/.test(e.message), `bad schema keyword: ${e.status} ${e.message}`);
e = await status({ model, messages, tools, tool_choice: "required", response_format: { type: "json_object" } });
check(e.status === 400 && e.param === "response_format", `tools with response_format: ${e.status} ${e.message}`);

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
