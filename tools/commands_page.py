"""Write nbs/commands.ipynb: the Commands page, each console script's `--help` as its parser prints it.

    python tools/commands_page.py          # (re)write the page, outputs included
    python tools/commands_page.py --check  # exit 1 if the page differs from what it would write

The text comes from `lever_plus.cli.command_help` (a fixed width, so it reads the same on any terminal);
tests/test_cli.py checks that the saved outputs are what the parsers print now."""
import argparse, configparser, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT/'nbs'/'commands.ipynb'

INTRO = """# Commands

> Every console script and every flag it takes, printed from the parsers themselves

`pip install -e .` installs seven commands. A run on the simulated world goes
`lever_plus_make_data` → `lever_plus_sft` → `lever_plus_grpo` → `lever_plus_eval` / `lever_plus_select`;
`lever_plus_demo` runs all of it in one go, and `lever_plus_prepare_vqa` starts the same path on a real VQA
dataset (see the "Use it on real data" page).

| command | what it does |
|---|---|
{rows}

Each command's help below is what `COMMAND --help` prints. The flags follow one scheme:

- the output folder is `--output_dir` (`--out` also works); `--device` is `auto` (CUDA if there is one) by default;
  a real VLM is `--vlm NAME` (`--model` also works) with `--vlm_dtype` (`--dtype`);
- a flag's help ends with its default, or says `(required)`; switches such as `--rl`, `--overwrite`, `--all_beams`
  take no value (the training config's switches also accept `true` / `false`);
- the training commands take a flag for each field of the training config they use, as `--section.field` and,
  where the name is unique, as `--field` (`--grpo.beta 0.05` = `--beta 0.05`); `--config file.yaml` gives any
  of them from a file, and flags override the file;
- a flag a command does not list is refused, never ignored.

Each help ends with examples; they run as written on the simulated world (the SFT and post-training examples
read the folder `data` the first `lever_plus_make_data` example writes)."""


def console_scripts(root:Path=ROOT) -> list:
    "Names of the console scripts settings.ini declares, in its order"
    cfg = configparser.ConfigParser(); cfg.read(root/'settings.ini')
    return [s.split('=')[0] for s in cfg['DEFAULT']['console_scripts'].split()]


def cell_source(name:str) -> str: return f"print(command_help('{name}'))"


def page() -> dict:
    from lever_plus.cli import command_help, command_parsers
    ps = command_parsers()
    names = console_scripts()
    rows = '\n'.join(f'| [`{n}`](#{n}) | {ps[n].description} |' for n in names)
    cells = [_md(INTRO.format(rows=rows)), _code('from lever_plus.cli import command_help')]
    for n in names:
        cells += [_md(f'## {n}\n\n{ps[n].description[0].upper() + ps[n].description[1:]}.'),
                  _code(cell_source(n), command_help(n) + '\n')]
    for i, c in enumerate(cells): c['id'] = f'c0{i:06d}'
    return {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
            'nbformat': 4, 'nbformat_minor': 5}


def _md(s): return {'cell_type': 'markdown', 'metadata': {}, 'source': s.splitlines(True)}

def _code(s, out=None):
    outs = [] if out is None else [{'name': 'stdout', 'output_type': 'stream', 'text': out.splitlines(True)}]
    return {'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': outs, 'source': s.splitlines(True)}


def text() -> str: return json.dumps(page(), indent=1, ensure_ascii=False, sort_keys=True) + '\n'  # the key order nbdev_clean writes


if __name__ == '__main__':
    a = argparse.ArgumentParser(description=__doc__.split('\n')[0]); a.add_argument('--check', action='store_true')
    if a.parse_args().check:
        if PAGE.read_text(encoding='utf-8') != text(): sys.exit(f'{PAGE.relative_to(ROOT)} is out of date: run `python tools/commands_page.py`')
    else: PAGE.write_text(text(), encoding='utf-8')
