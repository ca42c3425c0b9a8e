/** One JSON-RPC connection over a socket, for both ends (the clients and the helper). */
import type net from 'node:net';
import { createMessageConnection, type MessageConnection, SocketMessageReader, SocketMessageWriter } from 'vscode-jsonrpc/node';

export function socketConnection(sock: net.Socket): MessageConnection {
  const reader = new SocketMessageReader(sock);
  // vscode-jsonrpc re-arms its partial-message timer for ever and does not clear it on
  // dispose: a connection closed while a message was half received kept its process alive
  // (a CLI that had printed its answer never exited). Nothing here listens for that event.
  reader.partialMessageTimeout = 0;
  return createMessageConnection(reader, new SocketMessageWriter(sock));
}
