// Sends requests through one keep-alive agent and prints what came back.
//
// Usage: node keepalive.js BASE_URL PATH...
//
// Starts a GET for every PATH at once through one http.Agent with keepAlive
// and at most 4 sockets, so the requests queue for those sockets and reuse
// them. Prints one JSON object: for each PATH in order, the status, body and
// the number of the socket it went on (1 for the first socket the agent
// opened, and so on), or the error that ended it.

"use strict";

const http = require("node:http");

const REQUEST_TIMEOUT_MS = 30000;

const [base, ...paths] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
// Numbers sockets in the order they first carried a request. The request's
// reusedSocket flag cannot serve here, since Node sets it only when a request
// finds an idle socket, not when a queued request takes a freed one.
const socketNumbers = new Map();

function socketNumber(socket) {
  if (!socketNumbers.has(socket)) {
    socketNumbers.set(socket, socketNumbers.size + 1);
  }
  return socketNumbers.get(socket);
}

function get(path) {
  return new Promise((resolve) => {
    const request = http.get(base + path, { agent }, (response) => {
      const socket = socketNumber(request.socket);
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => {
        body += chunk;
      });
      response.on("end", () => {
        resolve({
          path,
          status: response.statusCode,
          body,
          socket,
          error: null,
        });
      });
      response.on("error", (err) => resolve({ path, error: err.code || String(err) }));
    });
    request.on("error", (err) => resolve({ path, error: err.code || String(err) }));
    request.setTimeout(REQUEST_TIMEOUT_MS, () => request.destroy(new Error("timed out")));
  });
}

Promise.all(paths.map(get)).then((results) => {
  agent.destroy();
  process.stdout.write(JSON.stringify({ results }) + "\n");
});
