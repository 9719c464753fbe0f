"""The offline docs site (`python tools/build_docs.py`) and README.md generation.

The site is built once per module into a temp dir (about 10-20 s on 2 cores): nbdev's doc processing, the
Quarto-to-plain converter and MkDocs. Then: a page per notebook with its title, every public name of every
module documented on its page, no remote assets, working internal links, and (when /usr/bin/chromium or
another chromium is installed) a headless screenshot that is not blank.
"""
import html, importlib, inspect, json, re, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SCRIPT = ROOT/'tools'/'build_docs.py'
sys.path.insert(0, str(SCRIPT.parent))
_dwb, sys.dont_write_bytecode = sys.dont_write_bytecode, True    # no tools/__pycache__
import build_docs as bd  # noqa: E402
sys.dont_write_bytecode = _dwb

NUMBERED = sorted(NBS.glob('[0-9]*.ipynb'))
CHROMIUM = next((p for p in ('/usr/bin/chromium', shutil.which('chromium'), shutil.which('chromium-browser'))
                 if p and Path(p).exists()), None)

def _cells(path): return json.loads(Path(path).read_text(encoding='utf-8'))['cells']

def nb_title(path) -> str:
    "The `# title` of a notebook (first markdown heading, or a raw frontmatter cell's title)"
    for c in _cells(path):
        src = bd._src(c)
        if c['cell_type'] == 'raw' and (bd.frontmatter(src) or {}).get('title'): return bd.frontmatter(src)['title']
        m = re.match(r'^\s*#\s+(.+)$', src, re.M) if c['cell_type'] == 'markdown' else None
        if m: return m.group(1).strip()
    raise AssertionError(f'{path.name}: no `# title` markdown cell')

def default_exp(path):
    for c in _cells(path):
        m = re.search(r'^\s*#\|\s*default_exp\s+(\S+)', bd._src(c), re.M) if c['cell_type'] == 'code' else None
        if m: return m.group(1)

def page_text(p:Path, sep:str=' ') -> str:
    "Visible text of a page (tags replaced by `sep`, entities decoded)"
    s = re.sub(r'<(script|style)\b.*?</\1>', ' ', p.read_text(encoding='utf-8'), flags=re.S)
    return html.unescape(re.sub(r'<[^>]+>', sep, s))

def has_h1(page:str, title:str) -> bool:
    return re.search(r'<h1 id="[^"]*">\s*' + re.escape(html.escape(title, quote=False)) + r'\s*<', page) is not None

# ---------------------------------------------------------------------------------------------------------
# the real site

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs')/'site'
    modidx = ROOT/'lever_plus'/'_modidx.py'
    before = (modidx.stat().st_mtime_ns, (ROOT/'_proc').exists(), (ROOT/'.cache').exists())
    r = subprocess.run([sys.executable, str(SCRIPT), '--out', str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f'docs build failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}'
    # the build works on a temp copy: the repo's generated files and folders are left alone
    assert (modidx.stat().st_mtime_ns, (ROOT/'_proc').exists(), (ROOT/'.cache').exists()) == before
    return out

def _nav_config():
    "[(section, [(notebook, label)])] of tools/mkdocs_template.yml, the notebooks that exist"
    import yaml
    tmpl = yaml.safe_load((ROOT/'tools'/'mkdocs_template.yml').read_text(encoding='utf-8'))
    return [(sec, [(nb, label) for nb, label, _ in items if (NBS/nb).exists()]) for sec, items in bd.nav_sections(tmpl)]

def _page(nb:str) -> str: return 'index.html' if nb == 'index.ipynb' else f'{bd.page_name(Path(nb))}.html'

def test_index_page(site):
    page = site/'index.html'
    assert page.exists()
    src = page.read_text(encoding='utf-8')
    assert has_h1(src, nb_title(NBS/'index.ipynb'))
    # the sidebar, in reading order: (page, label) of every link, and the section headings
    links = [(p, html.unescape(t)) for p, t in re.findall(
        r'<a href="([^"#]+\.html)" class="md-nav__link[^"]*">\s*<span class="md-ellipsis">\s*(.*?)\s*</span>', src, re.S)]
    sections = [html.unescape(t) for t in re.findall(
        r'<label class="md-nav__link" for="__nav_\d+" id="__nav_\d+_label"[^>]*>\s*<span class="md-ellipsis">\s*(.*?)\s*</span>', src, re.S)]
    conf = _nav_config()
    want = [(_page(nb), label) for _, items in conf for nb, label in items]
    assert links == want, f'sidebar {links} should be {want}'
    assert sections == [sec for sec, items in conf if items]
    # every notebook exactly once, under a readable label (not its file name)
    listed = [nb for _, items in conf for nb, _ in items]
    assert sorted(listed) == sorted(p.name for p in NBS.glob('*.ipynb')) and len(set(listed)) == len(listed)
    assert not [l for _, l in want if re.match(r'^\d+[a-z]?_', l) or l.endswith('.ipynb')]
    # Start opens the site; numbered notebooks keep their relative order inside each section
    assert conf[0][0] == 'Start' and conf[0][1][0][0] == 'index.ipynb'
    for _, items in conf:
        nums = [nb for nb, _ in items if re.match(r'\d', nb)]
        assert nums == sorted(nums)

@pytest.mark.parametrize('nb', NUMBERED, ids=[p.stem for p in NUMBERED])
def test_module_page(site, nb):
    page = site/f'{bd.page_name(nb)}.html'
    assert page.exists(), f'{nb.name}: no page {page.name} in the site'
    src, text, code = page.read_text(encoding='utf-8'), page_text(page), page_text(page, '')
    title = nb_title(nb)
    assert has_h1(src, title), f'{page.name}: no <h1> "{title}"'
    mod_name = default_exp(nb)
    if mod_name is None: return
    mod = importlib.import_module(f'lever_plus.{mod_name}')
    missing, undocumented = [], []
    for name in getattr(mod, '__all__', []):
        if name not in text: missing.append(name); continue
        obj = getattr(mod, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, '__module__', '') == mod.__name__:
            # show_doc gives it a heading whose id is nbdev's anchor (`core.html#name`), and a signature
            if not re.search(rf'<h[2-6] id="{re.escape(name.lower())}">', src) or f'{name}(' not in code:
                undocumented.append(name)
    assert not missing, f'{page.name}: public names of lever_plus.{mod_name} not on the page: {missing}'
    assert not undocumented, (f'{page.name}: no show_doc entry (heading + signature) for {undocumented}; '
                              'an exported public function/class in a `#| hide` cell is not documented')

def _site_files(site, *exts): return [p for p in site.rglob('*') if p.suffix in exts]

def test_no_remote_assets(site):
    bad = []
    for p in _site_files(site, '.html', '.css'):
        s = p.read_text(encoding='utf-8')
        for pat in [r'fonts\.googleapis', r'fonts\.gstatic', r'\bsrc\s*=\s*["\']?(?:https?:)?//',
                    r'<link\b[^>]*\bhref\s*=\s*["\']?(?:https?:)?//', r'url\(\s*["\']?(?:https?:)?//',
                    r'@import\s+["\']?(?:url\()?\s*["\']?(?:https?:)?//']:
            bad += [f'{p.relative_to(site)}: {m.group(0)}' for m in re.finditer(pat, s)]
    assert not bad, 'remote assets in the site:\n' + '\n'.join(bad[:20])

def test_internal_links(site):
    broken = []
    for p in _site_files(site, '.html'):
        if p.name == '404.html': continue    # MkDocs writes it with root-absolute links for web servers
        src = p.read_text(encoding='utf-8')
        for href in re.findall(r'href="([^"#:]+?\.(?:html|css|png|svg|jpg|jpeg|gif))(?:#[^"]*)?"', src):
            if not (p.parent/href).exists(): broken.append(f'{p.name} -> {href}')
    assert not broken, 'links to missing files: ' + ', '.join(sorted(set(broken)))

@pytest.mark.skipif(CHROMIUM is None, reason='no chromium installed (apt-get install chromium)')
def test_screenshot(site, tmp_path):
    png = tmp_path/'index.png'
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           f'--user-data-dir={tmp_path/"profile"}', f'--screenshot={png}', '--window-size=1200,900',
           (site/'index.html').as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert png.exists() and png.stat().st_size > 10_000, 'no (or a tiny) screenshot'
    data = png.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    w, h = int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')
    assert (w, h) == (1200, 900)
    import numpy as np
    from matplotlib.image import imread
    img = imread(png)[..., :3]
    assert len(np.unique(img.reshape(-1, 3).round(2), axis=0)) > 50   # text, header bar, ...: not blank
    assert img[:40].mean() < 0.8 < img[300:].mean()                    # coloured header bar, light page

# ---------------------------------------------------------------------------------------------------------
# README.md

def test_readme_in_sync():
    assert (ROOT/'README.md').read_text(encoding='utf-8') == bd.readme_text(ROOT), \
        'README.md is out of date with nbs/index.ipynb: run `python tools/build_docs.py --readme`'

def _write_nb(path, cells):
    nb = {'cells': cells, 'metadata': {'kernelspec': {'name': 'python3', 'language': 'python',
                                                      'display_name': 'python3'}}, 'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb), encoding='utf-8')

def _md(s): return {'cell_type': 'markdown', 'metadata': {}, 'source': s}
def _code(s, outs=()): return {'cell_type': 'code', 'metadata': {}, 'source': s, 'outputs': list(outs),
                               'execution_count': None}

def test_readme_text(tmp_path):
    (tmp_path/'settings.ini').write_text('[DEFAULT]\nlib_name = pkg\nnbs_path = nbs\nreadme_nb = index.ipynb\n')
    (tmp_path/'nbs').mkdir()
    _write_nb(tmp_path/'nbs'/'index.ipynb', [
        {'cell_type': 'raw', 'metadata': {}, 'source': '---\ntitle: pkg\ndescription: Does   things\n---\n'},
        _code('#| hide\nimport secret'),
        _md('## Usage\n\n::: {.callout-tip}\nRun it.\n:::'),
        _code('#| export\ndef f(): pass'),
        _code('print(1 + 1)\nx = 3 #| hide_line\n1 + 2', [
            {'output_type': 'stream', 'name': 'stdout', 'text': ['\x1b[31m2\x1b[0m\n']},
            {'output_type': 'execute_result', 'data': {'text/plain': ['3']}, 'metadata': {}, 'execution_count': 1},
            {'output_type': 'display_data', 'metadata': {},
             'data': {'image/png': 'AAAA', 'text/plain': ['<Figure>']}}]),
        _code('#| echo: false\nprint("shown")', [{'output_type': 'stream', 'name': 'stdout', 'text': 'shown\n'}]),
        _md('## Export -'),
    ])
    text = bd.readme_text(tmp_path)
    assert text == bd.readme_text(tmp_path)   # deterministic
    assert text == '\n\n'.join([
        '# pkg\n\n> Does things', bd.README_WARNING, '## Usage\n\n> **Tip**\n>\n> Run it.',
        '```python\nprint(1 + 1)\n1 + 2\n```', '```\n2\n3\n```', '```\nshown\n```']) + '\n'

# ---------------------------------------------------------------------------------------------------------
# the converter, on hand-made processed notebooks

CFG = {'doc_host': 'https://lever-plus.github.io', 'doc_baseurl': '/lever_plus'}

def _showdoc(name, line):
    md = (f'---\n\n[source](https://github.com/x/y/blob/main/lever_plus/core.py#L{line})'
          f'{{target="_blank" style="float:right; font-size:smaller"}}\n\n### {name}\n\n```python\ndef {name}()\n```')
    return _code(f'#| echo: false\n#| output: asis\nshow_doc({name})',
                 [{'output_type': 'execute_result', 'metadata': {}, 'execution_count': None,
                   'data': {'text/markdown': md, 'text/plain': name}}])

def test_converter():
    nb = {'metadata': {'widgets': {'state': {}}}, 'cells': [
        {'cell_type': 'raw', 'metadata': {},
         'source': '---\ndescription: Core stuff\noutput-file: core.html\ntitle: core\n---\n\n'},
        _md('<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->'),
        _md('See [`f`](https://lever-plus.github.io/lever_plus/core.html#f) and [data](01_data.ipynb#load).\n\n'
            '::: {.callout-note}\nA *note*.\n:::\n\n```\n::: not a div\n```'),
        _showdoc('LaterDef', 30), _showdoc('EarlierDef', 12),    # nbdev inserted them in reverse
        _code('#| code-fold: show\n#| code-summary: "Exported source"\nx = 1'),
        _code('#| include: false\ny = 2'),
        _code('#| echo: false\nz = 3'),                          # no output and no input: dropped
    ]}
    plain, title = bd.Converter(CFG, {'01_data.ipynb': 'data.ipynb'})(nb)
    assert title == 'core' and 'widgets' not in plain['metadata']
    cells = plain['cells']
    assert cells[0]['source'] == '# core\n\n> Core stuff'
    md = cells[1]['source']
    assert '[`f`](core.html#f)' in md and '[data](data.html#load)' in md
    assert '<div class="admonition note">\n<p class="admonition-title">Note</p>\n\nA *note*.\n\n</div>' in md
    assert '```\n::: not a div\n```' in md                     # code blocks are left alone
    sd = [c for c in cells if 'show_doc' in c['source']]
    assert [c['source'] for c in sd] == ['show_doc(EarlierDef)', 'show_doc(LaterDef)']   # source order
    assert all(c['metadata']['tags'] == ['remove_input'] for c in sd)
    out = sd[0]['outputs'][0]['data']['text/markdown']
    assert '<a class="nbdev-source" href="https://github.com/x/y/blob/main/lever_plus/core.py#L12"' in out
    assert '{target' not in out
    assert cells[-1]['source'] == 'x = 1' and len(cells) == 5

def test_convert_divs():
    md = '::: {.callout-warning}\n## Careful\nText\n:::\n\n::: {.column-margin}\nkept\n:::'
    assert bd.convert_divs(md, 'md') == '> **Careful**\n>\n> Text\n\nkept'
    assert bd.convert_divs('::: {.callout-tip title="Hint"}\nx\n:::', 'html').startswith(
        '<div class="admonition tip">\n<p class="admonition-title">Hint</p>')

def test_heading_id():
    seen = {}
    assert bd.heading_id('ControlConfig.__post_init__', seen) == 'controlconfig.__post_init__'   # = nbdev's _modidx
    assert bd.heading_id('The two commands', seen) == 'the-two-commands'
    assert bd.heading_id('The two commands', seen) == 'the-two-commands-1'
    assert bd.heading_id('1. Install (pip)', seen) == 'install-pip'

def test_refuses_foreign_out_dir(tmp_path):
    (tmp_path/'notes.txt').write_text('mine')
    with pytest.raises(SystemExit, match='not an earlier docs build'): bd._check_out(tmp_path)
    with pytest.raises(SystemExit, match='refusing'): bd._check_out(ROOT)

# ---------------------------------------------------------------------------------------------------------
# formulas (KaTeX), layout and copy buttons, in a headless browser after the page's scripts ran

def _katex_in_site(site) -> bool: return (site/'assets'/'katex'/'katex.min.js').exists()

_PROBE = '''<script>window.addEventListener('load', () => {
  const q = s => document.querySelector(s), w = e => e ? Math.round(e.getBoundingClientRect().width) : null;
  const tables = [...document.querySelectorAll('.jp-RenderedHTMLCommon table')];
  const out = document.createElement('pre'); out.id = 'PROBE';
  out.textContent = JSON.stringify({content: w(q('.md-content')), page: document.documentElement.scrollWidth,
    window: window.innerWidth, tables_inside: tables.every(t => t.getBoundingClientRect().right <= q('.md-content').getBoundingClientRect().right + 1),
    copy_buttons: new Set([...document.querySelectorAll('.jp-MarkdownCell pre > nav button[data-md-type="copy"]')]
      .map(b => { try { return document.querySelector(b.dataset.clipboardTarget); } catch (e) { return null; } })
      .filter(t => t && t.tagName === 'CODE')).size});   // distinct code blocks a copy button copies
  document.body.appendChild(out); });</script>'''

def browser_dom(site, page:str, tmp_path, size='1920,1080') -> tuple:
    "(DOM after the scripts ran, the probe's measurements) of a copy of `page` that measures the layout"
    src = (site/page).read_text(encoding='utf-8')
    probe = site/f'_probe_{page}'
    probe.write_text(src.replace('</body>', _PROBE + '</body>'), encoding='utf-8')
    try:
        cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync', f'--user-data-dir={tmp_path/"profile"}',
               '--virtual-time-budget=5000', f'--window-size={size}', '--dump-dom', probe.as_uri()]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    finally: probe.unlink()
    m = re.search(r'<pre id="PROBE">(.*?)</pre>', dom, re.S)
    assert m, f'{page}: the page did not finish loading in the browser'
    return dom, json.loads(html.unescape(m.group(1)))

def text_outside(dom:str, cls:str) -> str:
    "Visible text of `dom` outside elements whose class list holds `cls` (and outside script/style)"
    from html.parser import HTMLParser
    class P(HTMLParser):
        def __init__(s): super().__init__(); s.stack, s.out = [], []
        def handle_starttag(s, tag, attrs):
            if tag in ('br', 'img', 'input', 'meta', 'link', 'hr', 'wbr', 'source', 'path'): return
            s.stack.append(tag in ('script', 'style') or cls in (dict(attrs).get('class') or '').split())
        def handle_endtag(s, tag):
            if tag not in ('br', 'img', 'input', 'meta', 'link', 'hr', 'wbr', 'source', 'path') and s.stack: s.stack.pop()
        def handle_data(s, data):
            if not any(s.stack): s.out.append(data)
    p = P(); p.feed(dom)
    return ' '.join(p.out)

def test_math_source_kept(site):
    "The markdown renderer leaves the formulas as typed, for KaTeX to find"
    src = (site/'sim.html').read_text(encoding='utf-8')
    assert r'$c \in \mathbb{R}^{d_c}$' in src and '$$' in src
    if _katex_in_site(site):
        assert 'assets/katex/katex.min.js' in src and any((site/'assets'/'katex'/'fonts').glob('*.woff2'))

@pytest.mark.skipif(CHROMIUM is None, reason='no chromium installed (apt-get install chromium)')
def test_math_rendered(site, tmp_path):
    if not _katex_in_site(site): pytest.skip('KaTeX could not be fetched when the site was built (see its warning)')
    dom, m = browser_dom(site, 'sim.html', tmp_path)
    n = dom.count('class="katex"')
    assert n > 20, f'sim.html: {n} rendered formulas'
    assert 'class="katex-display"' in dom                      # $$…$$ blocks too
    assert 'katex-error' not in dom
    rest = text_outside(dom, 'katex')
    assert '\\mathbb' not in rest and '$c \\in' not in rest, 'raw LaTeX left outside the rendered formulas'

@pytest.mark.skipif(CHROMIUM is None, reason='no chromium installed (apt-get install chromium)')
def test_layout_1920(site, tmp_path):
    "At 1920 px: a wide text column, no horizontal page scroll, tables inside the column, copy buttons on code"
    _, m = browser_dom(site, 'configuration.html', tmp_path)
    assert m['content'] >= 1100, m                              # was ~730 px with the theme's default grid
    assert m['page'] <= m['window'] and m['tables_inside'], m
    _, q = browser_dom(site, 'quickstart.html', tmp_path)
    assert q['copy_buttons'] >= 5, q                            # the five commands' code blocks

def test_signatures_clean(site):
    assert bd.clean_signature('f(x:NoneType=None, y:int|None=None, z: NoneType = None)') == 'f(x=None, y:int|None=None, z=None)'
    bad = [p.name for p in _site_files(site, '.html') if 'NoneType' in page_text(p)]
    assert not bad, f'show_doc signatures with NoneType in {bad}'

def test_code_in_markdown():
    md_cell = ('<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell"><div class="highlight"><pre><span></span>'
               '<span class="n">x</span></pre></div></div>')
    out_cell = '<div class="jp-Cell jp-CodeCell jp-Notebook-cell"><div class="highlight"><pre><span></span>def f()</pre></div></div>'
    res = bd.code_in_markdown(md_cell + out_cell)
    assert '<pre id="md-code-1"><span></span><code><span class="n">x</span></code></pre>' in res
    assert res.endswith(out_cell)                               # show_doc signatures in outputs stay as they are
    two = bd.code_in_markdown('<div class="jp-Cell jp-MarkdownCell"><pre><code>a</code></pre><pre><code>b</code></pre></div>')
    assert 'id="md-code-1"><code>a' in two and 'id="md-code-2"><code>b' in two

def test_grouped_nav():
    tmpl = {bd.NAV_KEY: [{'Start': [{'index.ipynb': 'Overview'}, {'cmds.ipynb': {'title': 'Commands', 'optional': True}}]},
                         {'Parts': [{'00_core.ipynb': 'Core'}]}]}
    pages = [('index.ipynb', 'index.ipynb'), ('00_core.ipynb', 'core.ipynb')]
    assert bd.grouped_nav(tmpl, pages) == [{'Start': [{'Overview': 'index.ipynb'}]}, {'Parts': [{'Core': 'core.ipynb'}]}]
    with pytest.raises(SystemExit, match='nbs/extra.ipynb is not in the sidebar'):
        bd.grouped_nav(tmpl, pages + [('extra.ipynb', 'extra.ipynb')])
    with pytest.raises(SystemExit, match='listed but there is no nbs/00_core.ipynb'):
        bd.grouped_nav(tmpl, pages[:1])
    tmpl[bd.NAV_KEY][1]['Parts'].append({'index.ipynb': 'Again'})
    with pytest.raises(SystemExit, match='index.ipynb is listed twice'): bd.grouped_nav(tmpl, pages)

def test_katex_unavailable(tmp_path, monkeypatch, capsys):
    "No registry at build time: no KaTeX, one warning line, and the build goes on"
    def offline(dest): raise OSError('network is unreachable')
    monkeypatch.setattr(bd, '_download_katex', offline)
    assert bd.fetch_katex(tmp_path/'katex') is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('warning: KaTeX') and 'network is unreachable' in err[0]
    assert not (tmp_path/'katex').exists()

def test_katex_tarball_checked(tmp_path):
    "A tarball that is not the pinned one is refused (sha512), and nothing is extracted"
    import tarfile, io
    tgz = tmp_path/'katex.tgz'
    with tarfile.open(tgz, 'w:gz') as tf:
        data = b'alert(1)'; info = tarfile.TarInfo('package/dist/katex.min.js'); info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(RuntimeError, match='expected sha512'): bd._extract_katex(tgz, tmp_path/'out')
    assert not (tmp_path/'out').exists()
