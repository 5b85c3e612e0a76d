// images.generate and images.edit through the openai npm package: an edit of several images
// given as file streams (uploaded chunked, as `image[]`) with a mask. Prints one JSON line.
import fs from "node:fs";
import OpenAI from "openai";

const [baseURL, apiKey, operation, ...paths] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

try {
  let result;
  if (operation === "generate") {
    result = await client.images.generate({ model: paths[0], prompt: "a lighthouse at dusk",
      n: 2, size: "1024x1536", quality: "low", user: "node-caller-chosen-user" }).withResponse();
  } else {
    const [mask, ...images] = paths;
    result = await client.images.edit({ prompt: "make it snow",
      image: images.map((path) => fs.createReadStream(path)),
      mask: fs.createReadStream(mask), user: "node-caller-chosen-user" }).withResponse();
  }
  const { data, response } = result;
  console.log(JSON.stringify({ ok: true, count: data.data.length, usage: data.usage ?? null,
    requestId: response.headers.get("x-request-id") }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, status: err.status ?? null, error: err.error ?? String(err) }));
}
