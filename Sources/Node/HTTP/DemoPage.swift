/// The page served on `/` until the demo client lands.
enum DemoPage {
    static let html = """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>signal-node</title></head>
        <body><h1>signal-node</h1><p>Socket.IO signaling endpoint: <code>/socket.io/</code>.
        Health: <a href="/healthz">/healthz</a>, readiness: <a href="/readyz">/readyz</a>.</p></body></html>

        """
}
