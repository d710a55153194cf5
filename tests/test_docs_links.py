"""README and docs/ hold together: every relative link and image resolves (an anchor to a heading of its page), the
README stays a five-minute read, and every generated block is present exactly once, on the page its writer writes.
"""
import glob
import re
import sys
from os import path as osp

from mzsr_plugin.campaign import CAMPAIGN_KINDS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # the report generators are the checkout's tooling (tools/), not the package's
from tools.campaign_report.report import PAGES  # noqa: E402

CARD = osp.join('mzsr_plugin', 'weights', 'MODEL_CARD.md')
PAGES_CHECKED = ['README.md', CARD] + sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'docs', '*.md')))
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
MARKER = re.compile(r'<!-- (/?)([a-z_]+(?::[a-z0-9_]+)?) -->')
# Blocks a script writes: README / docs blocks of tools/campaign_report (PAGES), the model card's per model, and the
# printouts pasted from bench_kernel.py, gallery_real.py, bench_photos.py and bench_adapt/meta/large.py (their
# commands stand beside them).
CARD_BLOCKS = ['standing', 'summary:x2_direct'] + [f'{part}:{kind}' for kind in CAMPAIGN_KINDS
                                                   for part in ('campaign', 'measured')]
PRINTOUT_BLOCKS = {'bench:gaussian': 'docs/blind_mode.md', 'bench:div2krk': 'docs/blind_mode.md',
                   'gallery': 'docs/blind_mode.md', 'bench:photos': 'docs/photos.md', 'speed:adapt': 'docs/speed.md',
                   'speed:meta': 'docs/speed.md', 'speed:large': 'docs/speed.md', 'speed:adapt_bf16': 'docs/speed.md',
                   'speed:meta_bf16': 'docs/speed.md', 'speed:tf': 'docs/speed.md', 'speed:campaign': 'docs/speed.md',
                   'speed:large_bf16': 'docs/speed.md', 'bench:large': 'docs/photos.md'}


def _read(page):
    with open(osp.join(ROOT, page), encoding='utf-8') as f:
        return f.read()


def _anchors(text):
    """GitHub's heading anchors: lower case, punctuation but hyphens and underscores dropped, spaces to hyphens."""
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    headings = re.findall(r'^#+\s+(.+?)\s*$', text, flags=re.M)
    return {re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-') for h in headings}


def _links(text):
    text = re.sub(r'```.*?```', '', text, flags=re.S)  # code blocks hold commands, not links
    return [t for t in LINK.findall(text) if not re.match(r'[a-z]+:', t)]


def test_every_relative_link_and_image_resolves():
    broken = []
    for page in PAGES_CHECKED:
        for target in _links(_read(page)):
            file, _, anchor = target.partition('#')
            path = osp.normpath(osp.join(ROOT, osp.dirname(page), file)) if file else osp.join(ROOT, page)
            if not osp.exists(path):
                broken.append(f'{page}: {target} (no {osp.relpath(path, ROOT)})')
            elif anchor and path.endswith('.md') and anchor not in _anchors(_read(osp.relpath(path, ROOT))):
                broken.append(f'{page}: {target} (no heading #{anchor})')
    assert broken == []


def test_the_link_check_catches_a_broken_link_and_anchor():
    assert _links('[a](docs/none.md) ![b](x.png) [c](https://x.org) `[d](e)`\n```\n[f](g)\n```') == [
        'docs/none.md', 'x.png', 'e']
    assert {'model-zoo', 'blind-mode---kernel-estimate', 'mzsr-sr-your-own-images'} <= _anchors(
        '## Model zoo\n## Blind mode: `--kernel estimate`\n## `mzsr-sr`: your own images\n')


def test_every_generated_block_is_present_once_where_its_writer_writes():
    where = {}
    for page in PAGES_CHECKED:
        text = _read(page)
        for closing, name in MARKER.findall(text):
            if not closing:
                assert text.count(f'<!-- /{name} -->') == 1, f'{page}: <!-- {name} --> is not closed once'
                where.setdefault(name, []).append(page)
    expected = {**{name: page for name, page in PAGES.items()}, **{name: CARD for name in CARD_BLOCKS},
                **PRINTOUT_BLOCKS}
    assert {name: where.get(name) for name in expected} == {name: [page] for name, page in expected.items()}
    assert sorted(set(where) - set(expected)) == []  # a block nobody writes would be typed by hand


def test_readme_is_a_five_minute_read_that_keeps_the_two_commands():
    readme = _read('README.md')
    assert len(readme.splitlines()) <= 250
    first = readme.split('```bash\n', 1)[1].split('```', 1)[0].splitlines()
    assert first[0].startswith('pip install -e . && python -m mzsr_plugin.demo')
    assert first[1].startswith('pip install -e ".[dev,app]" && python -m pytest tests')
    # One quick start per user, each pointing into docs/.
    for heading in ('### You have a photo', '### You use BasicSR', '### You reproduce the paper'):
        section = readme.split(heading, 1)[1].split('\n### ', 1)[0].split('\n## ', 1)[0]
        assert '](docs/' in section, heading
