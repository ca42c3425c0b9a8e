export interface LinkResult {
  link: string;
  status: 'created' | 'updated' | 'unchanged' | 'foreign';
  onPath: boolean;
  command: string;
  advice: string[];
}
export function binDir(env: NodeJS.ProcessEnv): string;
export function wrapperText(node: string, cli: string): string;
export function firstOnPath(name: string, envPath: string | undefined): string | null;
export function linkCli(o: { root: string; env?: NodeJS.ProcessEnv; node?: string }): LinkResult;
