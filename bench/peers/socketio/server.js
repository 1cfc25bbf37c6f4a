// The socket.io peer of Xiaowo's benchmark (scenario 7): the usual way a watch-party server is
// written on Node. A client joins a room; an event sent for a room is re-emitted to everyone in
// it. No auth, no storage: only what fan-out itself costs socket.io.
//
// Started by xiaowo-bench with the same core pinning as Xiaowo's server; prints
// `listening <port>` once bound to loopback (PORT=0, the default, picks a free port).
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const httpServer = http.createServer();
const io = new Server(httpServer, {
  // WebSocket only, as a production deployment would be: no long-polling upgrade dance.
  transports: ['websocket'],
  serveClient: false,
  // Compression would trade server CPU for bytes; loopback needs no fewer bytes.
  perMessageDeflate: false,
});

io.on('connection', (socket) => {
  socket.on('join', (room) => {
    if (typeof room !== 'string') return;
    socket.join(room);
    socket.emit('joined');
  });
  socket.on('event', (room, payload) => {
    if (typeof room !== 'string') return;
    // One broadcast: socket.io encodes the packet once and writes it to each member's socket.
    io.to(room).emit('event', payload);
  });
});

httpServer.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening ${httpServer.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
