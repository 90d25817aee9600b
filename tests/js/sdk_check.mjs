// Drives relaylog with the official Node `openai` package, the way Helicone's docs teach:
// baseURL pointed at the proxy, helicone-id read from the raw response.
// Usage: node sdk_check.mjs <relaylog base URL ending in /v1>; prints one JSON line.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "sk-js-test", maxRetries: 0 });

const plain = await client.chat.completions
  .create(
    { model: "gpt-4o-mini", messages: [{ role: "user", content: "hello from node" }] },
    { headers: { "Helicone-Property-Sdk": "node", "Helicone-User-Id": "js-user" } },
  )
  .withResponse();

const streamed = await client.chat.completions
  .create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "stream from node" }],
    stream: true,
  })
  .withResponse();
let text = "";
for await (const chunk of streamed.data) {
  text += chunk.choices[0]?.delta?.content ?? "";
}

console.log(
  JSON.stringify({
    plain_id: plain.response.headers.get("helicone-id"),
    plain_text: plain.data.choices[0].message.content,
    stream_id: streamed.response.headers.get("helicone-id"),
    stream_text: text,
  }),
);
