/**
 * The back office's stylesheet and its one script: the live status of a terminal page, polled
 * from its status.json once a second until the review is decided and the terminal is final.
 * Served from here (not inline) so the Content-Security-Policy can forbid inline script.
 */
import type { FastifyInstance } from 'fastify';

const STYLE = `
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;color:#1d2330;background:#f4f6f9}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;background:#17324d;color:#fff}
header nav{display:flex;gap:1rem;flex:1}header a{color:#cfe3ff;text-decoration:none}header a:hover{text-decoration:underline}
header .who{opacity:.85}header button{background:#2d5b87;color:#fff;border:0;padding:.3rem .7rem;border-radius:4px}
main{padding:1rem 1.4rem;max-width:1200px}h1{font-size:1.4rem;margin:.2rem 0 1rem}.card>h2:first-child{margin-top:0}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1rem}th,td{padding:.35rem .55rem;border-bottom:1px solid #e2e6ec;text-align:left;vertical-align:top}
th{background:#eef2f7;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.card{background:#fff;border:1px solid #dfe4eb;border-radius:6px;padding:1rem;margin-bottom:1rem}.narrow{max-width:360px}
label{display:block;margin:.4rem 0}input,select,textarea{font:inherit;padding:.35rem;border:1px solid #b9c3cf;border-radius:4px;width:100%}
button{font:inherit;padding:.4rem .9rem;border-radius:4px;border:1px solid #2d5b87;background:#2d5b87;color:#fff;cursor:pointer}
button.danger{background:#a4262c;border-color:#a4262c}button.plain{background:#fff;color:#2d5b87}
form.inline{display:inline}.row{display:flex;gap:1rem;flex-wrap:wrap}.row>.card{flex:1;min-width:280px}
.flash{padding:.6rem .8rem;border-radius:4px}.flash.ok{background:#e3f4e6;border:1px solid #9ccea6}.flash.error{background:#fbe5e5;border:1px solid #e2a3a3}
.state{display:inline-block;padding:.05rem .45rem;border-radius:10px;background:#e8edf3;font-size:.85em}
.state.active{background:#dff3e3}.state.deactivated{background:#eee;color:#666}.state.deactivation-pending,.state.deactivating{background:#fff1cc}
.lock{display:inline-block;padding:.05rem .45rem;border-radius:10px;background:#fbe0e0;color:#8a1c1c;font-size:.85em;margin-left:.2rem}
.muted{color:#6b7685}.pager{display:flex;gap:.8rem;align-items:center;margin:.5rem 0}.search{display:flex;gap:.5rem;max-width:480px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}dl.facts dt{color:#6b7685}dl.facts dd{margin:0}
.code{font-family:ui-monospace,monospace;font-size:1.05em;background:#f0f3f7;padding:.15rem .4rem;border-radius:4px;word-break:break-all}
.stage{font-weight:600}
`;

const LIVE = `
(function(){
  var box=document.querySelector('[data-status-url]');if(!box)return;
  // Once a form is on its way, the page is leaving: a redraw now would cancel the submission.
  var leaving=false;document.addEventListener('submit',function(){leaving=true;},true);
  var url=box.getAttribute('data-status-url');
  function set(name,value){var els=box.querySelectorAll('[data-field="'+name+'"]');for(var i=0;i<els.length;i++){els[i].textContent=value;
    if(name==='state'){els[i].className='state '+value;}}}
  function tick(){fetch(url,{credentials:'same-origin',cache:'no-store'}).then(function(r){return r.ok?r.json():null}).then(function(s){
    if(leaving)return;
    if(!s){setTimeout(tick,2000);return;}
    // A change of state, locks, review or batches redraws the whole page (tables, forms).
    if(s.version!==box.getAttribute('data-version')){location.replace(box.getAttribute('data-page-url'));return;}
    for(var k in s.fields){set(k,s.fields[k]);}
    if(!s.final)setTimeout(tick,1000);
  }).catch(function(){setTimeout(tick,2000);});}
  setTimeout(tick,500);
})();
`;

/** GET /assets/style.css and /assets/live.js. */
export async function assetRoutes(app: FastifyInstance): Promise<void> {
  app.get('/assets/style.css', async (_req, reply) =>
    reply.type('text/css; charset=utf-8').send(STYLE),
  );
  app.get('/assets/live.js', async (_req, reply) =>
    reply.type('text/javascript; charset=utf-8').send(LIVE),
  );
}
