// Usage: node check.mjs BASE_URL MODEL PROMPT
// Runs a streamed chat completion and a non-streamed completion of PROMPT
// through the official openai client and prints one JSON object with what
// came back.
import OpenAI from "openai";

const [baseURL, model, prompt] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });

const out = {};
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Tell me a story about Lily." }],
  max_tokens: 12,
  temperature: 0,
  stream: true,
});
let chat = "";
let chunks = 0;
let finish = null;
for await (const chunk of stream) {
  chunks++;
  const c = chunk.choices[0];
  if (c.delta?.content) chat += c.delta.content;
  if (c.finish_reason) finish = c.finish_reason;
}
out.chat = { text: chat, chunks, finish };

const completion = await client.completions.create({
  model,
  prompt,
  max_tokens: 10,
  temperature: 0,
});
out.completion = {
  text: completion.choices[0].text,
  finish: completion.choices[0].finish_reason,
  usage: completion.usage,
};

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

try {
  await client.completions.create({ model: "no-such-model", prompt: "x" });
  out.error = null;
} catch (e) {
  out.error = { status: e.status, message: e.message };
}
console.log(JSON.stringify(out));
