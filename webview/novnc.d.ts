/** The part of noVNC's RFB (node_modules/@novnc/novnc/core/rfb.js, 1.7.0) the Display tab uses; noVNC ships no types. */
declare module '@novnc/novnc' {
  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, urlOrChannel: string | object, options?: { shared?: boolean; credentials?: Record<string, string> });
    scaleViewport: boolean;
    resizeSession: boolean;
    clipViewport: boolean;
    focusOnClick: boolean;
    viewOnly: boolean;
    background: string;
    focus(options?: FocusOptions): void;
    disconnect(): void;
  }
}
