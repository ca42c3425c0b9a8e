/** One JSON-RPC connection over a socket, for both ends (the clients and the helper). */
import type net from 'node:net';
import { createMessageConnection, type Message, type MessageConnection, SocketMessageReader, SocketMessageWriter } from 'vscode-jsonrpc/node';

/**
 * A failed write (the peer is gone: EPIPE) is reported through the connection's onError,
 * and its close follows. vscode-jsonrpc's sendRequest rethrows the write's rejection from
 * an async Promise executor, where nothing can catch it: a CLI that had already printed
 * "the helper went away" then crashed on the unhandled rejection with a stack trace.
 */
class SocketWriter extends SocketMessageWriter {
  override write(msg: Message): Promise<void> {
    return super.write(msg).catch(() => {});
  }
}

export function socketConnection(sock: net.Socket): MessageConnection {
  const reader = new SocketMessageReader(sock);
  // vscode-jsonrpc re-arms its partial-message timer for ever and does not clear it on
  // dispose: a connection closed while a message was half received kept its process alive
  // (a CLI that had printed its answer never exited). Nothing here listens for that event.
  reader.partialMessageTimeout = 0;
  return createMessageConnection(reader, new SocketWriter(sock));
}
