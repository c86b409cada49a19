"""Issue 37: what the docs promise, tested. Every command that README, the guides (nbs/guides/) and the notebooks show in a
shell block is collected from the pages themselves (`climbkit.site.documented_commands`), so this file cannot drift from
them, and runs as written in a copy of the project (the copy's runs/, out.ipynb, _docs/ are its own). What is added:
- size parameters only: fewer epochs or steps, a tiny model, few routes, samples and trials (`SIZES`, never a setting the
  command itself gives, except its length: epochs, steps, trials, repeats, num_stories);
- real stand-ins for what a reader replaces with their own (`STAND_INS`): my_board.json, kilter.db, my-space.yaml,
  /path/to/graph, /data/imagenet, TinyStories-valid.txt, runs/<name>, a Dask scheduler's address.
Each must exit 0 and leave what its page says it leaves (`leaves`). Not run here (`NOT_RUN`, each with its reason): `make test`,
which runs this file; `make docs`, which tests/test_docs.py runs; nbdev's two commands, which `make test` runs; and the long
measurements, whose notebooks' own commands run here at a small size. A command that
needs data beside the checkout (`../shared/...`) runs where it is there and is skipped elsewhere, saying so."""
import json, os, re, shlex, signal, socket, subprocess, sys, time, urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SHARED, notebook_text, copy_project
from climbkit.site import documented_commands
from climbkit.compare import status_word
from climbkit.core import list_runs, load_config_file
from climbkit.run import find_config_file

COMMANDS = documented_commands(ROOT)
VENV = Path(sys.executable).parent.parent  # the venv running the tests: the copy's .venv is a link to it

# ------------------------------------------------------------------------------------------------ what is not run, and why
NOT_RUN = {
    r'make test': 'it is the command that runs this test (CI runs it: .ci/run)',
    r'make results(-[\w-]+)?': 'a long measurement that rewrites the ledger (minutes to hours); its notebooks run here at a small size',
    r'make docs': 'tests/test_docs.py runs it, in a copy of the project, and checks the site it builds: its links, and its pages in headless Chromium',
    r'(\.venv/bin/)?nbdev_(export|test)': '`make test` runs both (check-export, nbdev-test); nbdev_export here would write into the checkout',
    r'make (bench|soak)': 'a long measurement (40 minutes, half an hour); `papermill nbs/bench.ipynb` / `nbs/soak.ipynb` run here at a small size',
}

def not_run_reason(cmd:str) -> str|None:
    return next((why for pat, why in NOT_RUN.items() if re.fullmatch(pat, cmd)), None)

# ------------------------------------------------------------------------------------------------------ the size parameters
# a tiny model and data set, few samples: each run takes seconds. LENGTH keys replace what the command gives; the rest only fill in.
LENGTH = ('epochs', 'steps', 'trials', 'repeats', 'num_stories')  # num_stories: how much of the data
SIZES = {
    'climb': dict(epochs=1, n_routes=400, d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, batch_size=32, warmup_steps=5,
                  metric_samples=2, samples_per_grade=1, best_of=2, guidance_sweep='1', best_of_sweep='', self_best_of_sweep=''),
    'climb_grade': dict(epochs=1, n_routes=400, channels=4, hidden=8),
    'kg': dict(steps=6, eval_every=3, save_every_steps=3, n_families=10, d_model=32, n_layers=1, n_heads=2, dim_feedforward=64,
               max_seq_len=3, batch_size=64, warmup_steps=2, eval_triples=50),
    'stories': dict(epochs=1, num_stories=60, hidden_dim=16, num_rules=4, batch_size=8),
    'images': dict(epochs=1, arch='resnet18', image_size=32, classes=3, train_per_class=8, val_per_class=2, batch_size=8),
    'synthetic': dict(epochs=1, n_samples=256, d_in=16, hidden='16,16', batch_size=64),
    'generate': dict(n=4, metric_samples=1, guidance_sweep='1', best_of_sweep='', self_best_of_sweep=''),
    'sweep': dict(trials=1),
    'bench': dict(steps=6, warmup=1, repeats=1, configs='climb16', ablate='', limit_configs='', ablation_steps=4, freeze_steps=2,
                  n_samples=256, d_in=16, mlp_hidden='16,16', n_routes=300, d_model=32, n_layers=1, n_heads=2, dim_feedforward=64,
                  ceiling_sizes='64', slow_bf16_steps=3, limit_steps=2, limit_repeats=1, scaling_steps=1, scaling_batches='4',
                  scaling_checks='', sharing_seconds=0),
    'soak': dict(steps=20, n_routes=300, checkpoint_every=10),
    'compare': {},
}
# what a resumed run's final report draws (the model and data are the run's own)
REPORT_SIZES = ('metric_samples', 'samples_per_grade', 'best_of', 'guidance_sweep', 'best_of_sweep', 'self_best_of_sweep')
# the sweeps' trials: the flagship's sweep (nbs/configs/sweep-climb.yaml) with its sizes shrunk, its search kept
SWEEP_SIZES = dict(epochs=1, checkpoint_every=4, n_routes=400, n_layers=1, n_heads=2, dim_feedforward=64, metric_samples=2, samples_per_grade=1,
                   best_of=2, guidance_sweep='', best_of_sweep='', self_best_of_sweep='')
SWEEP_WIDTHS = {'choice': [16, 32]}  # d_model, searched as the flagship's sweep searches it

def config_of(words:list[str]) -> dict:
    "The settings of the config file a papermill command names (`-p config`), as a run reads them (found as it finds it, `extends` followed)."
    cfg = dict(pairs(words)).get('config')
    return load_config_file(find_config_file(cfg)) if cfg else {}

def task_of(words:list[str]) -> str:
    "The task a train command trains: its `-p task`, else its config file's, else climb."
    return dict(pairs(words)).get('task') or config_of(words).get('task', 'climb')

def pairs(words:list[str]) -> list[tuple[str, str]]:
    "The (name, value) of each `-p name value` in a papermill command's words."
    return [(words[i + 1], words[i + 2]) for i, w in enumerate(words) if w == '-p' and i + 2 < len(words)]

def sized(given:dict, sizes:dict) -> dict:
    "The size parameters to add to a command that gives `given`: every LENGTH key, the others where the command is silent."
    return {k: v for k, v in sizes.items() if k in LENGTH or k not in given}

def p_args(params:dict) -> str:
    return ' '.join(f'-p {k} {shlex.quote(str(v))}' for k, v in params.items())

def cli_args(params:dict) -> str:
    return ' '.join(f'--{k} {shlex.quote(str(v))}' for k, v in params.items())

# ------------------------------------------------------------------------------------------------------------ the workspace
class Workspace:
    "A copy of the project (pages, notebooks, configs, ledger; the venv linked) with `../shared` beside it where the checkout has it."
    def __init__(self, base:Path):
        self.base, self.proj = base, copy_project(base/'climbkit')
        if SHARED.is_dir(): (base/'shared').symlink_to(SHARED)
        self.env = {**os.environ, 'PATH': f"{VENV/'bin'}{os.pathsep}{os.environ['PATH']}", 'PYTHONUNBUFFERED': '1'}
        self.cluster, self.made = None, set()

    def runs(self, task:str|None=None, checkpoint:str='best.pt') -> list[Path]:
        "Run folders in the copy's runs/, newest first, as a resume or generate.ipynb finds them (`list_runs`)."
        return list_runs(self.proj/'runs', task, checkpoint)

    def run(self, cmd:str, timeout:int=600) -> subprocess.CompletedProcess:
        "`cmd` through the shell in the copy's root, as a reader types it; fails the test with its output if it fails."
        t0 = time.time()
        p = subprocess.run(cmd, shell=True, cwd=self.proj, env=self.env, capture_output=True, text=True, timeout=timeout)
        print(f'$ {cmd}\n  exit {p.returncode} in {time.time() - t0:.0f} s')
        assert p.returncode == 0, f'`{cmd}` failed (exit {p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}'
        return p

    # the stand-ins for what a reader brings
    def moonboard_file(self) -> Path:
        from climbkit.climb import generate_routes
        move = lambda r, h: {'Description': h, 'IsStart': h in r.start, 'IsEnd': h in r.finish}
        f = self.proj/'my_board.json'
        f.write_text(json.dumps([{'Grade': r.grade, 'Moves': [move(r, h) for h in r.holds]} for r in generate_routes(500)]))
        return f

    def kilter_db(self) -> Path:
        from climbkit.aurora import make_aurora_test_db
        return make_aurora_test_db(self.proj/'kilter.db', n_climbs=400)

    def sweep_space(self, name='my-space.yaml') -> Path:
        "The flagship's sweep with its sizes shrunk: what `make sweep` and my-space.yaml search, in seconds a trial."
        spec = yaml.safe_load((ROOT/'nbs'/'configs'/'sweep-climb.yaml').read_text())
        spec['fixed'].update(SWEEP_SIZES); spec['search']['d_model'] = SWEEP_WIDTHS; spec['trials'] = 2
        f = self.proj/name; f.write_text(yaml.safe_dump(spec, sort_keys=False)); return f

    def stories_file(self) -> Path:
        from climbkit.stories import story_corpus
        f = self.proj/'TinyStories-valid.txt'
        f.write_text('\n<|endoftext|>\n'.join(' '.join(s for s, _ in story) for story in story_corpus(80, 4, seed=1)) + '\n')
        return f

    def graph_folder(self) -> str:
        from climbkit.kg import family_kg
        kg, d = family_kg(10, seed=1), self.base/'graph'
        d.mkdir(exist_ok=True)
        for s in ('train', 'valid', 'test'):
            (d/f'{s}.txt').write_text(''.join(f'{kg.entities[h]}\t{kg.relations[r]}\t{kg.entities[t]}\n' for h, r, t in kg.split(s).tolist()))
        return str(d)

    def image_root(self) -> str:
        "An ImageNet-style folder of generated images at <tmp>/data/imagenet/train: what /data/ stands for."
        from climbkit.images import synthetic_images
        gen = synthetic_images(self.base/'gen', n_classes=6, train_per_class=120, val_per_class=0, image_size=32)
        (self.base/'data'/'imagenet').mkdir(parents=True, exist_ok=True)
        if not (self.base/'data'/'imagenet'/'train').exists(): (self.base/'data'/'imagenet'/'train').symlink_to(gen/'train')
        return str(self.base/'data') + '/'

    def scheduler(self) -> str:
        "A Dask scheduler on this machine, started once: what tcp://host:8786 stands for."
        if self.cluster is None:
            from dask.distributed import LocalCluster
            self.cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=':0')
        return self.cluster.scheduler_address

    def close(self):
        if self.cluster is not None: self.cluster.close()


@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    w = Workspace(tmp_path_factory.mktemp('docs'))
    yield w
    w.close()

# ------------------------------------------------------------------------------------------------------------ the stand-ins
def _newest(ws:Workspace, task:str, checkpoint='best.pt') -> Path:
    runs = ws.runs(task, checkpoint)
    if not runs: need(ws, task); runs = ws.runs(task, checkpoint)
    assert runs, f'no {task} run with checkpoints/{checkpoint} under {ws.proj/"runs"}'
    return runs[0]

def need(ws:Workspace, task:str):
    "A trained run of `task`, made by the documented command that makes one (when this test runs alone, with -k)."
    first = {'climb': 'make train', 'kg': 'papermill nbs/train.ipynb out.ipynb -p task kg',
             'stories': 'papermill nbs/train.ipynb out.ipynb -p task stories -p epochs 5 -p hidden_dim 32 -p num_rules 4'}[task]
    ws.run(expand(ws, first))

def _kg_step_checkpoint(ws, m):
    "The newest step checkpoint of the newest knowledge-graph run that kept one (a run's step_N.pt: also mid-run)."
    _newest(ws, 'kg')
    for run in ws.runs('kg'):
        steps = sorted(run.glob('checkpoints/step_*.pt'), key=lambda p: int(p.stem.split('_')[1]))
        if steps: return str(steps[-1].relative_to(ws.proj))
    raise AssertionError(f'no knowledge-graph run under {ws.proj/"runs"} kept a step checkpoint')

STAND_INS = [  # (pattern in a command, what stands in for it here)
    (r'runs/<name>', lambda ws, m: str(_newest(ws, 'climb').relative_to(ws.proj))),
    (r'runs/kg-umls/checkpoints/step_\d+\.pt', _kg_step_checkpoint),
    (r'runs/kg-umls/checkpoints/best\.pt', lambda ws, m: str((_newest(ws, 'kg')/'checkpoints'/'best.pt').relative_to(ws.proj))),
    (r'/path/to/graph', lambda ws, m: ws.graph_folder()),
    (r'(?<![\w.])/data/', lambda ws, m: ws.image_root()),
    (r'tcp://host:8786', lambda ws, m: ws.scheduler()),
]
FILES = {'my_board.json': Workspace.moonboard_file, 'kilter.db': Workspace.kilter_db, 'my-space.yaml': Workspace.sweep_space,
         'TinyStories-valid.txt': Workspace.stories_file}

def stand_ins(ws:Workspace, cmd:str) -> str:
    for name, make in FILES.items():
        if re.search(rf'(^|[\s\'"=]){re.escape(name)}($|[\s\'"])', cmd) and not (ws.proj/name).exists(): make(ws)
    for pat, fn in STAND_INS:
        cmd = re.sub(pat, lambda m: fn(ws, m), cmd)
    return cmd

# -------------------------------------------------------------------------------------------------- adding the sizes
def size_papermill(ws:Workspace, words:list[str]) -> str:
    "The `-p` size parameters for one `papermill nbs/X.ipynb OUT ...` command."
    nb, given = Path(words[1]).stem, dict(pairs(words))
    if nb == 'train':
        task = task_of(words)
        sizes = dict(SIZES[task])
        if given.get('resume') not in (None, 'False'):  # a resumed run: one epoch more than the newest has
            done = json.loads((_newest(ws, task, 'latest.pt')/'results.json').read_text())['epochs']
            sizes = {'epochs': done + 1, **{k: v for k, v in SIZES['climb'].items() if k in REPORT_SIZES}}
        if task == 'kg' and 'config' in given and 'eval_triples' in sizes: sizes.pop('max_seq_len')  # the recipe's context is its own
        return p_args(sized(given, sizes))
    if nb == 'generate':
        return p_args(sized(given, SIZES['generate'] if given.get('task', 'climb') == 'climb' else {}))
    if nb == 'sweep':
        if 'resume' in given:  # one more trial than the sweep has
            have = len(list((ws.proj/given['resume']/'trials').glob('trial-*')))
            return p_args({'trials': have + 1})
        return p_args(SIZES['sweep'])
    return p_args(sized(given, SIZES[nb]))

def expand(ws:Workspace, cmd:str) -> str:
    "`cmd` as it runs here: its stand-ins, and its size parameters added to each papermill, make or climbkit-* part."
    cmd = stand_ins(ws, cmd)
    parts = cmd.split(' && ')
    return ' && '.join(size_part(ws, part) for part in parts)

def _make_vars(words):
    "(target words, {VAR: value}) of a make command."
    targets = [w for w in words[1:] if '=' not in w]
    return targets, dict(w.split('=', 1) for w in words[1:] if '=' in w)

def size_part(ws:Workspace, part:str) -> str:
    words = shlex.split(part)
    if words[0] == 'papermill': return f'{part} {size_papermill(ws, words)}'
    if words[0] == 'make':
        targets, var = _make_vars(words)
        add = lambda k, sizes: var.__setitem__(k, (var.get(k, '') + ' ' + p_args(sizes)).strip())
        if targets == ['train']:
            args, gargs = dict(pairs(['', *shlex.split(var.get('ARGS', ''))])), dict(pairs(['', *shlex.split(var.get('GRADER_ARGS', ''))]))
            add('ARGS', sized(args, SIZES['climb'])); add('GRADER_ARGS', sized(gargs, SIZES['climb_grade']))
        elif targets == ['generate']: add('ARGS', SIZES['generate'])
        elif targets == ['sweep']:
            var.setdefault('SWEEP_SPEC', str(ws.sweep_space('sweep-climb-small.yaml')))
            if not (ws.proj/'runs'/var.get('SWEEP', '-')).is_dir(): add('ARGS', SIZES['sweep'])  # a new sweep; a resumed one runs its spec
        return shlex.join(['make', *targets, *(f'{k}={v}' for k, v in var.items())])
    if Path(words[0]).name == 'climbkit-train' or (words[0] == 'torchrun' and 'climbkit-train' in words):
        given = {w[2:]: words[i + 1] for i, w in enumerate(words) if w.startswith('--') and i + 1 < len(words)}
        if given.get('resume') not in (None, 'false'):
            done = json.loads((_newest(ws, 'climb', 'latest.pt')/'results.json').read_text())['epochs']
            return f"{part} --epochs {done + 1} {cli_args({k: v for k, v in SIZES['climb'].items() if k in REPORT_SIZES})}"
        return f"{part} {cli_args(sized(given, SIZES[given.get('task', 'climb')]))}"
    if Path(words[0]).name == 'climbkit-sweep': return f'{part} --trials 1'
    return part

# ------------------------------------------------------------------------------------------------------ what each leaves
def new_runs(ws, before:set) -> list[Path]:
    return [r for r in ws.runs(checkpoint='latest.pt') if r not in before]

def finished(run:Path, task:str|None=None):
    "A run folder as the docs describe it: its report figures, metrics.csv, results.json (finished), checkpoints, config.json."
    res = json.loads((run/'results.json').read_text())
    assert status_word(res['status']) in ('finished', 'early-stopped'), f'{run}: {res["status"]}'
    assert task is None or res['task'] == task
    for f in ('config.json', 'metrics.csv', 'checkpoints/best.pt', 'checkpoints/latest.pt'): assert (run/f).is_file(), f'{run} has no {f}'
    assert list((run/'figures').glob('*.png')), f'{run} has no figures'

def clean_notebook(path:Path):
    "A rendered notebook that ran every cell without an error."
    nb = json.loads(Path(path).read_text())
    errors = [o for c in nb['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors, f"{path}: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert nb['metadata'].get('papermill', {}).get('exception') in (None, False)
    return notebook_text(path)


@dataclass
class Outcome:
    "What one command did: its output, the runs it made, the notebooks it wrote; for a resume, the run's latest.pt before."
    cmd: str
    ran: str
    proc: subprocess.CompletedProcess
    new: list = field(default_factory=list)
    resumed: tuple|None = None  # (run folder, its latest.pt before the command)
    pages: dict|None = None  # README and the guides before the command

def pages(ws) -> dict:
    return {p: p.read_text() for p in [ws.proj/'README.md', *sorted((ws.proj/'nbs'/'guides').glob('*.md'))]}

def continued(o:Outcome):
    "A resume went on counting: one epoch more, the earlier history kept, metrics.csv a row an epoch."
    import torch, csv
    run, before = o.resumed
    after = torch.load(run/'checkpoints'/'latest.pt', weights_only=False)
    assert after['epoch'] == before['epoch'] + 1 and after['step'] > before['step']
    assert after['history'][:-1] == before['history'] and [h['epoch'] for h in after['history']] == list(range(1, after['epoch'] + 1))
    assert [int(r['epoch']) for r in csv.DictReader((run/'metrics.csv').open())] == list(range(1, after['epoch'] + 1))

def leaves(ws:Workspace, o:Outcome):
    "Check that `o.cmd` left what its page says it leaves."
    words = shlex.split(o.ran.split(' && ')[-1])
    if words[0] == 'papermill':
        out, given, nb = ws.proj/words[2], dict(pairs(words)), Path(words[1]).stem
        text = clean_notebook(out)
        if nb == 'train':
            if given.get('resume') not in (None, 'False'):
                assert 'Resuming' in text and not o.new, 'a resume makes no new run'
                continued(o)
            else:
                assert len(o.new) == 1, f'expected one new run folder, got {o.new}'
                finished(o.new[0], task_of(words))
                if given.get('name'): assert o.new[0].name == given['name']
                if given.get('data', '').endswith('moonboard2016.json'):  # the real file: every record read, and learned from
                    assert 'moonboard2016.json: 13570 routes from 13570 records' in text
                    res = json.loads((o.new[0]/'results.json').read_text())
                    assert res['final']['valid_loss'] < res['baselines']['unigram']
        elif nb == 'generate':
            if given.get('task', 'climb') == 'climb': assert 'ms/route' in text and 'grade' in text
            else: assert all(v in text for v in re.findall(r'=(\w+)', given['structure'])), text[-2000:]  # written from its structure
            assert any('image/png' in x.get('data', {}) for c in json.loads(out.read_text())['cells'] for x in c.get('outputs', [])) \
                   or given.get('task') == 'stories'
        elif nb == 'sweep':
            folder = ws.proj/given['resume'] if 'resume' in given else \
                     max((ws.proj/'runs').glob(f"{given.get('name', 'sweep-*')}/sweep.json"), key=os.path.getmtime).parent
            assert (folder/'sweep.json').is_file() and (folder/'leaderboard.csv').is_file() and 'complete' in text
        elif nb == 'compare': assert 'valid' in text
        elif nb in ('bench', 'soak'): assert o.new or list((ws.proj/'runs').glob(f'{nb}-*/results.json'))
        return
    if words[0] == 'make':
        targets, var = _make_vars(words)
        if targets == ['train']:
            made = {r.name.split('-')[0] for r in o.new}
            assert len(o.new) == 2 and made == {'grade', 'climb'}, f'make train made {o.new}'
            for r in o.new: finished(r); clean_notebook(r/'train.ipynb')
        elif targets == ['generate']: clean_notebook(_newest(ws, 'climb')/'generate.ipynb')
        elif targets == ['compare']: clean_notebook(ws.proj/'runs'/'compare.ipynb')
        elif targets == ['sweep']:
            name = var.get('SWEEP') or re.search(r'sweep folder: runs/(\S+)', o.proc.stdout).group(1)
            folder = ws.proj/'runs'/name
            clean_notebook(folder/'sweep.ipynb'); assert (folder/'sweep.json').is_file()
        elif targets == ['docs']: assert (ws.proj/'_docs'/'index.html').is_file() and '0 broken link(s)' in o.proc.stdout
        return
    if Path(words[0]).name == 'climbkit-ledger':  # the pages agree with the ledger already: nothing to rewrite
        assert pages(ws) == o.pages, f'{words[1]} changed a page'
        if words[1] == 'check': assert 'every ledger table agrees with results/' in o.proc.stdout
    if 'climbkit-train' in words:
        if '--resume' in words: assert not o.new and 'Resuming' in o.proc.stdout; continued(o)
        else: assert len(o.new) == 1; finished(o.new[0], 'climb')
    if Path(words[0]).name == 'climbkit-eval':
        assert 'mrr' in (o.proc.stdout + o.proc.stderr).lower()
        if '--json' in words:  # the figures, as a file
            res = json.loads((ws.proj/words[words.index('--json') + 1]).read_text())
            assert res['task'] == 'kg' and 0 < res['test_mrr'] <= 1
    if Path(words[0]).name == 'climbkit-sweep': assert 'complete' in o.proc.stdout
    if words[0] == 'python' and 'make_subset' in o.ran:
        dst = re.findall(r"'([^']+)'", o.ran)[-1]
        sub = json.loads((Path(dst)/'subset.json').read_text())
        assert len(sub['classes']) == 5 and len(sub['files']['train']) == 250 and len(sub['files']['val']) == 50

# ------------------------------------------------------------------------------------------------------------- the order
def order(cmd:str) -> int:
    "Commands that make runs first, then those that read them (a resume, generate, eval, compare)."
    if re.search(r'make_subset', cmd): return 0
    if re.search(r'resume|runs/<name>|climbkit-eval|generate|compare|make sweep SWEEP=|-p scheduler|--scheduler', cmd): return 2
    if 'data /data/' in cmd: return 1
    return 1 if not cmd.startswith('make lab') else 3

UNIQUE = sorted(dict.fromkeys(c.text for c in COMMANDS), key=order)
RUNNABLE = [c for c in UNIQUE if not not_run_reason(c)]

def needs_shared(cmd:str) -> bool:
    "The command reads data beside the checkout (`../shared/...`): in its words, or in the data of the config file it names."
    return '../shared/' in cmd or '../shared/' in str(config_of(shlex.split(cmd.split(' && ')[-1])).get('data', ''))

def short(cmd:str) -> str:
    return re.sub(r'\s+', ' ', cmd)[:90]

# ----------------------------------------------------------------------------------------------------------------- tests
def test_the_pages_show_commands_and_each_is_run_or_excused():
    "The collector finds the pages' commands; each one is either run below or named in NOT_RUN (a rule that excuses nothing fails)."
    assert len(COMMANDS) >= 40 and {'README.md', 'nbs/guides/training.md', 'nbs/train.ipynb'} <= {c.page for c in COMMANDS}
    assert 'make train' in UNIQUE and 'make test' in UNIQUE
    for pat in NOT_RUN: assert any(re.fullmatch(pat, c) for c in UNIQUE), f'NOT_RUN rule {pat!r} matches no documented command'
    make_targets = re.findall(r'^([\w-]+):', (ROOT/'Makefile').read_text(), re.M)
    for c in UNIQUE:  # every make target a page names exists
        if c.startswith('make '): assert _make_vars(shlex.split(c))[0][0] in make_targets + ['results-' + r for r in
            re.search(r'^RESULTS := (.*)$', (ROOT/'Makefile').read_text(), re.M).group(1).split()], c


@pytest.mark.parametrize('cmd', RUNNABLE, ids=short)
def test_documented_command(ws, cmd):
    if needs_shared(cmd) and not SHARED.is_dir():
        pytest.skip(f'needs {SHARED}, the data beside the checkout, which is not here')
    if cmd == 'make lab': return lab_answers(ws)
    sweep = re.fullmatch(r'make sweep SWEEP=(\S+)', cmd)
    if sweep and not (ws.proj/'runs'/sweep.group(1)).is_dir(): kill_a_sweep(ws, sweep.group(1))  # "after a kill"
    if 'compare' in cmd: _newest(ws, 'climb')  # runs to compare (when this test runs alone, with -k)
    resumed = None
    if re.search(r'-p resume True|--resume true', cmd):  # the run it will continue, as it is now
        import torch
        run = _newest(ws, 'climb', 'latest.pt'); resumed = (run, torch.load(run/'checkpoints'/'latest.pt', weights_only=False))
    before = set(ws.runs(checkpoint='latest.pt'))
    ran, before_pages = expand(ws, cmd), pages(ws)
    proc = ws.run(ran)
    leaves(ws, Outcome(cmd, ran, proc, new_runs(ws, before), resumed, before_pages))
    if sweep:  # the interrupted trials resumed, each trial run once: the spec's two, finished
        folder = ws.proj/'runs'/sweep.group(1)
        text = clean_notebook(folder/'sweep.ipynb')
        assert 'trials: 2 complete' in text, text[-3000:]
        for trial in ('trial-000', 'trial-001'): finished(folder/'trials'/trial, 'climb')

def kill_a_sweep(ws:Workspace, name:str):
    "`make sweep SWEEP=name` started and stopped with SIGTERM (as a kill from the terminal) once a trial has saved a checkpoint."
    cmd = shlex.join(['make', 'sweep', f'SWEEP={name}', f"SWEEP_SPEC={ws.sweep_space('sweep-climb-small.yaml')}"])
    proc = subprocess.Popen(cmd, shell=True, cwd=ws.proj, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    t_end = time.time() + 300
    while not list((ws.proj/'runs'/name).glob('trials/trial-*/checkpoints/latest.pt')):
        assert proc.poll() is None and time.time() < t_end, f'the sweep ended before a checkpoint: {proc.stdout.read()[-3000:]}'
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def lab_answers(ws:Workspace):
    "`make lab` serves JupyterLab on the project root: started as written, its URL answers, then it is stopped."
    cfg = ws.base/'jupyter'; cfg.mkdir(exist_ok=True)
    port = free_port()
    (cfg/'jupyter_server_config.json').write_text(json.dumps({'ServerApp': {'port': port, 'open_browser': False}}))
    env = {**ws.env, 'JUPYTER_CONFIG_DIR': str(cfg), 'JUPYTER_RUNTIME_DIR': str(cfg/'runtime')}
    proc = subprocess.Popen('make lab', shell=True, cwd=ws.proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    log, url, t_end = [], None, time.time() + 120
    try:
        while url is None and time.time() < t_end and proc.poll() is None:
            line = proc.stdout.readline(); log.append(line)
            m = re.search(r'(http://127\.0\.0\.1:\d+/lab\?token=\w+)', line)
            if m: url = m.group(1)
        assert url, 'make lab printed no URL:\n' + ''.join(log[-40:])
        for attempt in range(40):  # the URL is printed as the server starts listening
            try:
                with urllib.request.urlopen(url, timeout=30) as r: assert r.status == 200 and b'JupyterLab' in r.read(); break
            except urllib.error.URLError:
                if attempt == 39: raise
                time.sleep(0.5)
        with urllib.request.urlopen(url.replace('/lab?', '/api/contents/nbs?'), timeout=30) as r:
            assert any(x['name'] == 'train.ipynb' for x in json.loads(r.read())['content'])  # the project root, nbs/ in it
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
