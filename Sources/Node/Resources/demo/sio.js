// A small Socket.IO v5 client over the Engine.IO v4 WebSocket transport (no polling, no binary, namespace "/").
//
//   const socket = new SioSocket("ws://host/socket.io/?EIO=4&transport=websocket");
//   socket.on("connect", () => ...);            // after every (re)connection; socket.id is the new Socket.IO id
//   socket.on("disconnect", (reason) => ...);   // the connection was lost; a reconnection is scheduled
//   socket.on("user_joined", (payload) => ...); // any server event
//   socket.emit("message", {roomName, content});
//   const answer = await socket.emitWithAck("join_room", {roomName, personName}, 5000);
//   new SioSocket(url, {auth: () => ({token})});  // CONNECT payload (e.g. a JWT), asked for on every connection
//   socket.recovered                              // after a reconnection: the server kept our socket (same id, rooms,
//                                                 // missed events replayed): connection state recovery, when on
//
// Wire (shared/notes/protocol-facts.md §1–2): the server opens with `0{"sid",pingInterval,pingTimeout,…}`, pings
// with `2` (we answer `3`), we CONNECT with `40` and get `40{"sid":…}`; events are `42["name",…]`, with an ack id
// `42<id>[…]` answered by `43<id>[…]`. Reconnection: exponential backoff from 0.5 s to 5 s with jitter, forever,
// until close() is called or the server refuses the CONNECT (CONNECT_ERROR, e.g. a bad token), as the reference
// client does.
"use strict";

class SioSocket {
  constructor(url, options = {}) {
    this.url = url;
    this.minDelay = options.minDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 5000;
    this.ackTimeout = options.ackTimeout ?? 10000;
    this.auth = options.auth ?? null; // object, or function returning one: the CONNECT payload
    this.id = null; // Socket.IO socket id, null while not connected
    this.pid = null; // connection state recovery: the private session id from the last CONNECT answer
    this.offset = null; // and the offset of the last event received
    this.recovered = false;
    this.connected = false;
    this.attempts = 0; // failed attempts since the last successful connection
    this.reconnections = 0; // successful connections after the first
    this.handlers = new Map();
    this.acks = new Map(); // ack id -> {resolve, reject, timer}
    this.nextAckId = 0;
    this.ws = null;
    this.closed = false;
    this.everConnected = false;
    this.pingTimer = null;
    this.retryTimer = null;
    this.open();
  }

  on(name, handler) {
    if (!this.handlers.has(name)) this.handlers.set(name, []);
    this.handlers.get(name).push(handler);
    return this;
  }

  off(name, handler) {
    const list = this.handlers.get(name);
    if (list) this.handlers.set(name, list.filter((h) => h !== handler));
    return this;
  }

  dispatch(name, ...args) {
    for (const handler of this.handlers.get(name) || []) {
      try {
        handler(...args);
      } catch (error) {
        console.error(`handler of ${name} failed`, error);
      }
    }
  }

  /// Sends an event; returns false (and sends nothing) while disconnected.
  emit(name, ...args) {
    if (!this.connected) return false;
    this.send("42" + JSON.stringify([name, ...args]));
    return true;
  }

  /// Sends an event asking for an ack; resolves with the ack's first argument.
  emitWithAck(name, payload, timeout = this.ackTimeout) {
    return new Promise((resolve, reject) => {
      if (!this.connected) return reject(new Error("not connected"));
      const id = this.nextAckId++;
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error(`no ack for ${name} within ${timeout} ms`));
      }, timeout);
      this.acks.set(id, { resolve, reject, timer });
      this.send("42" + id + JSON.stringify([name, payload]));
    });
  }

  /// Closes for good (no reconnection).
  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      if (this.connected) this.send("41");
      this.ws.close();
    }
    this.lost("io client disconnect");
  }

  /// Drops the current connection as if the network failed (the socket reconnects). For tests and the UI.
  drop() {
    if (this.ws) this.ws.close();
  }

  // MARK: transport

  send(text) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  open() {
    if (this.closed) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this.dispatch("connect_error", error);
      return this.scheduleReconnect();
    }
    this.ws = ws;
    ws.onmessage = (event) => {
      if (ws === this.ws && typeof event.data === "string") this.receive(event.data);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (!this.connected && !this.closed) this.dispatch("connect_error", new Error("connection closed before CONNECT"));
      this.lost("transport close");
      this.scheduleReconnect();
    };
    ws.onerror = () => {}; // onclose follows
  }

  receive(text) {
    const type = text[0];
    const data = text.slice(1);
    switch (type) {
      case "0": { // Engine.IO open
        const open = JSON.parse(data);
        this.pingWindow = (open.pingInterval || 25000) + (open.pingTimeout || 20000);
        this.armPingTimer();
        let auth = typeof this.auth === "function" ? this.auth() : this.auth;
        // Connection state recovery: the session id and the last offset seen, as the reference client sends them.
        if (this.pid) auth = { pid: this.pid, offset: this.offset ?? undefined, ...(auth || {}) };
        this.send(auth ? "40" + JSON.stringify(auth) : "40");
        break;
      }
      case "2": // ping
        this.armPingTimer();
        this.send("3");
        break;
      case "1": // Engine.IO close
        if (this.ws) this.ws.close();
        break;
      case "4":
        this.receivePacket(data);
        break;
      default: // 3 pong, 5 upgrade, 6 noop: nothing to do
        break;
    }
  }

  receivePacket(text) {
    const type = text[0];
    let rest = text.slice(1);
    if (rest.startsWith("/")) return; // another namespace: not ours
    const digits = /^\d*/.exec(rest)[0];
    const ackId = digits === "" ? null : Number(digits);
    rest = rest.slice(digits.length);
    const payload = rest === "" ? undefined : JSON.parse(rest);
    switch (type) {
      case "0": { // CONNECT
        this.id = payload.sid;
        // Recovered: the server kept our socket (same id, rooms) and replays what we missed after this.
        this.recovered = Boolean(payload.pid) && payload.pid === this.pid;
        this.pid = payload.pid || null;
        this.connected = true;
        if (this.everConnected) this.reconnections++;
        this.everConnected = true;
        this.attempts = 0;
        this.dispatch("connect");
        break;
      }
      case "1": // the server disconnected us: reconnect like the reference client does not, to keep the demo alive
        if (this.ws) this.ws.close();
        break;
      case "2": { // EVENT
        if (!Array.isArray(payload) || payload.length === 0) return;
        const [name, ...args] = payload;
        // With recovery on, an event's last argument is its offset (handlers still get it, as with the reference).
        if (this.pid && args.length && typeof args[args.length - 1] === "string") this.offset = args[args.length - 1];
        if (ackId !== null) this.send("43" + ackId + "[]"); // the server never asks, but answer if it does
        this.dispatch(name, ...args);
        break;
      }
      case "3": { // ACK
        const pending = this.acks.get(ackId);
        if (!pending) return;
        this.acks.delete(ackId);
        clearTimeout(pending.timer);
        pending.resolve(Array.isArray(payload) ? payload[0] : undefined);
        break;
      }
      case "4": // CONNECT_ERROR: refused (bad or missing token, …); retrying would get the same answer
        this.closed = true;
        this.refusal = payload && payload.message ? payload.message : "connect error";
        this.dispatch("connect_error", new Error(this.refusal));
        if (this.ws) this.ws.close();
        break;
      default: // 5/6 binary: not used by the signaling events
        break;
    }
  }

  armPingTimer() {
    clearTimeout(this.pingTimer);
    // No ping within pingInterval + pingTimeout: the connection is dead even if TCP has not noticed yet.
    this.pingTimer = setTimeout(() => {
      if (this.ws) this.ws.close();
    }, this.pingWindow);
  }

  lost(reason) {
    clearTimeout(this.pingTimer);
    for (const [, pending] of this.acks) {
      clearTimeout(pending.timer);
      pending.reject(new Error("disconnected"));
    }
    this.acks.clear();
    if (this.connected) {
      this.connected = false;
      this.id = null;
      this.dispatch("disconnect", reason);
    }
  }

  scheduleReconnect() {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempts);
    const delay = base * (0.75 + Math.random() * 0.5);
    this.attempts++;
    this.dispatch("reconnecting", { attempt: this.attempts, delay });
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}

window.SioSocket = SioSocket;
