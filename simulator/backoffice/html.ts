/**
 * Server-rendered HTML with escaping by construction: the `html` tag escapes every interpolated
 * value unless it is already Html (made by the tag itself), so a page can only carry markup a
 * template wrote. Terminal ids, reasons, notes and names all come from people or terminals.
 */

/** Markup that is already safe to send. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

/** Escapes text for an element body or a quoted attribute. */
function escapeHtml(v: unknown): string {
  return String(v).replace(/[&<>"'`]/g, (c) => ENTITIES[c]!);
}

type Value = Html | string | number | boolean | null | undefined | readonly Value[];

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return (v as readonly Value[]).map(render).join('');
  return escapeHtml(v);
}

/** The template tag: `html\`<p>${untrusted}</p>\``. */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return new Html(out);
}

/** Integer fen as yuan with two decimals; never a float on the way. */
export function yuan(fen: number | null | undefined): string {
  if (fen === null || fen === undefined) return '-';
  const sign = fen < 0 ? '-' : '';
  const abs = Math.abs(Math.trunc(fen));
  return `${sign}¥${Math.trunc(abs / 100).toLocaleString('en-US')}.${String(abs % 100).padStart(2, '0')}`;
}

/** A timestamp as UTC text, or a dash. */
export function when(ms: number | null | undefined): string {
  if (!ms) return '-';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

/** A hidden CSRF field for a form. */
export function csrfField(token: string): Html {
  return html`<input type="hidden" name="_csrf" value="${token}" />`;
}

/** What the layout needs to know about the viewer. */
export interface Viewer {
  username: string;
  role: 'merchant' | 'reviewer';
  displayName: string;
  csrf: string;
}

/** The page frame: header, navigation for the role, logout form, flash message. */
export function page(
  title: string,
  body: Html,
  viewer?: Viewer,
  flash?: { kind: 'ok' | 'error'; text: string },
): string {
  const nav = !viewer
    ? html``
    : viewer.role === 'merchant'
      ? html`<a href="/pos">POS management</a><a href="/activation-codes">Activation codes</a
          ><a href="/advices">Offline advices</a><a href="/audit">Audit</a>`
      : html`<a href="/review">Review queue</a><a href="/terminals">Terminals</a
          ><a href="/advices">Offline advices</a><a href="/audit">Audit</a>`;
  const who = viewer
    ? html`<span class="who">${viewer.displayName} (${viewer.role})</span>
        <form method="post" action="/logout" class="inline">
          ${csrfField(viewer.csrf)}<button type="submit">Log out</button>
        </form>`
    : html``;
  const note = flash
    ? html`<p class="flash ${flash.kind}" role="status">${flash.text}</p>`
    : html``;
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · Acquirer back office</title>
        <link rel="stylesheet" href="/assets/style.css" />
        <script src="/assets/live.js" defer></script>
      </head>
      <body>
        <header>
          <strong>Acquirer back office</strong>
          <nav>${nav}</nav>
          ${who}
        </header>
        <main>
          <h1>${title}</h1>
          ${note}${body}
        </main>
      </body>
    </html>`.text;
}
