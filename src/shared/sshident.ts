/**
 * The SSH identification line (RFC 4253 4.2): the first line a server sends that starts
 * "SSH-", after any other lines. Both the helper's readiness probe and ssh-proxy read it.
 */

/**
 * In what the server sent so far: the line (without CR LF) and where the data after it
 * starts; null when this cannot be SSH; undefined while more is needed.
 */
export function parseIdent(data: string): { ident: string; end: number } | null | undefined {
  let start = 0;
  for (;;) {
    const nl = data.indexOf('\n', start);
    if (nl < 0) return data.length - start > 255 ? null : undefined;
    const line = data.slice(start, nl).replace(/\r$/, '');
    if (line.startsWith('SSH-')) return /^SSH-2\.0-[\x21-\x7e]+( [\x20-\x7e]*)?$/.test(line) ? { ident: line, end: nl + 1 } : null;
    start = nl + 1;
  }
}
