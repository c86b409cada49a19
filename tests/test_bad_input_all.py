"""Every public entry point of climbkit, fed wrong things.

Each case checks three things:
1. it stops with an exception (or a non-zero papermill exit) whose message is ONE line naming the culprit
   (the parameter, the file, the record, the hold, the grade...);
2. a previous run folder it could touch is byte-for-byte unchanged (hashed before and after; `.lock`, the run lock
   that every attempt rewrites, is left out there and checked by its own test);
3. no partially written file (`*.tmp`) is left anywhere.

Entry points: `start_run` / `resolve_run_config`, papermill on nbs/train.ipynb, `load_route_file`, `climb_tensors`,
`load_aurora_db`, `load_checkpoint_file`, `load_generator`, `load_grader`, `bench.profile`, `synthetic_data`.
`N_CASES` (bottom) is the number of test cases this file collects; `test_case_count` keeps it honest.
Extends tests/test_bad_input.py: more entry points and more variants of each kind of bad input.
"""
import errno, hashlib, io, json, os, pickle, random, shutil, sqlite3, traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import climbkit.core as core
from climbkit.core import ClimbkitError
from climbkit.learner import load_checkpoint_file
from climbkit.run import start_run, resolve_run_config
from climbkit.climb import load_route_file
from climbkit.climb_data import climb_tensors
from climbkit.aurora import load_aurora_db, make_aurora_test_db
from climbkit.climb_grader import load_grader
from climbkit.climb_eval import load_generator
from climbkit.bench import profile
from climbkit.synthetic import synthetic_data
from climbkit.data import cache_root
from conftest import TINY, papermill, notebook_text

# ---------------------------------------------------------------------------------------------------------------- helpers
QUIET = {k: v for k, v in TINY.items() if k not in ('samples_per_grade', 'sample_grades')}
BASE = {  # tiny, valid settings of each task: a case changes one thing
    'climb': QUIET,
    'climb_grade': dict(task='climb_grade', n_routes=600, epochs=1, threads=1, channels=4, hidden=8, batch_size=64),
    'synthetic': dict(task='synthetic', n_samples=200, d_in=8, hidden='8', fused='false', epochs=1, threads=1),
    None: dict(threads=1),
}


AS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0  # root writes into read-only folders (CAP_DAC_OVERRIDE)

# The child `start_unprivileged` starts: it gives up every capability (it stays uid 0, so it can still start the Python
# under /root, which `nobody` cannot reach), proves that `blocked` is now closed to it, runs `start_run` and reports
# what that raised as one JSON line after the marker.
_CHILD = r'''
import ctypes, json, os, pickle, sys, traceback
from pathlib import Path
args = pickle.loads(sys.stdin.buffer.read())
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0): sys.exit(f'prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}')  # exec gains nothing
for cap in range(64):  # the bounding set, best effort: no_new_privs above already keeps exec from giving caps back
    if libc.prctl(24, cap, 0, 0, 0): break  # PR_CAPBSET_DROP; EINVAL past the last capability
class Head(ctypes.Structure): _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]
class Caps(ctypes.Structure): _fields_ = [(k, ctypes.c_uint32) for k in ('effective', 'permitted', 'inheritable')]
if libc.capset(ctypes.byref(Head(0x20080522, 0)), (Caps * 2)()): sys.exit(f'capset failed: {os.strerror(ctypes.get_errno())}')
status = dict(l.split(':', 1) for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('Cap'))
held = {k: v.strip() for k, v in status.items() if k in ('CapEff', 'CapPrm', 'CapInh', 'CapAmb') and int(v, 16)}
if held or len(status) < 4: sys.exit(f'still privileged: {status}')
blocked = Path(args['blocked'])
if os.access(blocked, os.W_OK): sys.exit(f'{blocked} is still writable: the test would prove nothing')
try: fd = os.open(blocked/'.unprivileged-probe', os.O_CREAT | os.O_EXCL | os.O_WRONLY)
except PermissionError: pass
else: os.close(fd); os.unlink(blocked/'.unprivileged-probe'); sys.exit(f'could still create a file in {blocked}')
sys.path[:0] = args['sys_path']
from climbkit.run import start_run
try: start_run(args['params']); res = None
except Exception as e:
    fr = [f for f in traceback.extract_tb(e.__traceback__) if f'{os.sep}climbkit{os.sep}' in f.filename]
    res = dict(module=type(e).__module__, qualname=type(e).__qualname__, msg=str(e),
               origin=f'{fr[-1].name} ({Path(fr[-1].filename).name}:{fr[-1].lineno})' if fr else '(raised outside climbkit)')
    traceback.print_exc()
print('@@result@@', json.dumps({'uid': os.getuid(), 'caps': status, 'raised': res}), flush=True)
'''


def start_unprivileged(params:dict, blocked:Path) -> Exception:
    """What `start_run(params)` raises in a process without root's power to write anywhere (`catch` for root).
    That process checks that it really cannot write `blocked` first, and fails the test loudly if it can."""
    import subprocess, sys, importlib
    args = pickle.dumps(dict(params=params, blocked=str(blocked), sys_path=sys.path))
    p = subprocess.run([sys.executable, '-c', _CHILD], input=args, capture_output=True, cwd=os.getcwd(), timeout=300)
    out, err = p.stdout.decode(errors='replace'), p.stderr.decode(errors='replace')
    print(out[-3000:]); print(err[-3000:])
    lines = [l for l in out.splitlines() if l.startswith('@@result@@ ')]
    if p.returncode != 0 or not lines:
        pytest.fail(f'the unprivileged child failed (exit {p.returncode}):\n{err[-5000:]}\n{out[-2000:]}')
    res = json.loads(lines[-1].split(' ', 1)[1])
    assert not any(int(v, 16) for k, v in res['caps'].items() if k in ('CapEff', 'CapPrm')), res['caps']
    if res['raised'] is None: pytest.fail('no error was raised (in the unprivileged child)')
    r = res['raised']
    try:
        cls = importlib.import_module(r['module'])
        for part in r['qualname'].split('.'): cls = getattr(cls, part)
        e = cls(r['msg'])
        assert str(e) == r['msg']
    except Exception: e = type(r['qualname'], (Exception,), {})(r['msg'])  # anything else: check_message says what it was
    e.child_origin = f"{r['origin']}, in the unprivileged child"
    print(f"[{type(e).__name__} from {e.child_origin}] {e}")
    return e


def start_run_blocked(params:dict, blocked:Path) -> Exception:
    "What `start_run(params)` raises when `blocked` is read-only: in process, or as root in an unprivileged child."
    return start_unprivileged(params, blocked) if AS_ROOT else catch(lambda: start_run(params))


def origin(e:BaseException) -> str:
    "The innermost climbkit frame of `e`'s traceback (function, file:line), for the failure report."
    if hasattr(e, 'child_origin'): return e.child_origin
    fr = [f for f in traceback.extract_tb(e.__traceback__) if f'{os.sep}climbkit{os.sep}' in f.filename]
    return f'{fr[-1].name} ({Path(fr[-1].filename).name}:{fr[-1].lineno})' if fr else '(raised outside climbkit)'


def catch(fn) -> Exception:
    "Call `fn`, which must raise; return what it raised (the files are checked before the message)."
    try: fn()
    except Exception as e:
        print(f'[{type(e).__name__} from {origin(e)}] {e}')
        return e
    pytest.fail('no error was raised')


def check_message(e:Exception, *needles, kinds=(ClimbkitError,)) -> Exception:
    """`e` must be one of `kinds` with a one-line, readable message containing every needle
    (a needle may be a tuple of alternatives)."""
    msg, where = str(e), origin(e)
    head = f'{type(e).__name__} from {where}: {msg[:300]!r}'
    assert isinstance(e, kinds), f"expected {'/'.join(k.__name__ for k in kinds)}, got {head}"
    assert msg.strip() and '\n' not in msg.strip() and 'Traceback' not in msg, f'not one clear sentence: {head}'
    assert 'PosixPath(' not in msg, f'a Path repr instead of the path: {head}'
    for n in needles:
        alts = n if isinstance(n, tuple) else (n,)
        assert any(str(a) in msg for a in alts), f'the message does not name {" or ".join(map(repr, map(str, alts)))}: {head}'
    return e


def raises_clearly(fn, *needles, kinds=(ClimbkitError,)) -> Exception:
    "`catch` then `check_message`, for calls that cannot write anything."
    return check_message(catch(fn), *needles, kinds=kinds)


def tree(d, skip_names=('.lock',), skip_top=()) -> dict|None:
    "Every path under `d`: content hash for files, 'dir' for folders (None if `d` does not exist)."
    d = Path(d)
    if not d.exists(): return None
    out = {}
    for p in sorted(d.rglob('*')):
        rel = p.relative_to(d)
        if p.name in skip_names or (rel.parts and rel.parts[0] in skip_top): continue
        out[str(rel)] = 'dir' if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def partials(*dirs) -> list[str]:
    "Partially written files (atomic writes' temporaries, sqlite journals) under `dirs`."
    return [str(p) for d in dirs if Path(d).exists() for p in Path(d).rglob('*')
            if p.name.endswith('.tmp') or p.name.endswith(('-journal', '-wal', '-shm'))]


def copy_run(src:Path, dst_parent:Path) -> Path:
    dst_parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(src, dst_parent/src.name))


def unchanged(before, d, **kw):
    after = tree(d, **kw)
    if after != before:
        b, a = before or {}, after or {}
        diff = sorted({k for k in set(b) | set(a) if b.get(k) != a.get(k)})
        pytest.fail(f'{d} changed: {diff[:8]}')


@pytest.fixture(scope='module')
def prev(tmp_path_factory):
    "Finished runs (a route generator and a grade predictor) that every failing call must leave alone."
    out = tmp_path_factory.mktemp('prev')
    _, l = start_run({**QUIET, 'out_dir': out, 'name': 'done', 'save_every': 1}); l.fit()
    _, g = start_run({**BASE['climb_grade'], 'out_dir': out, 'name': 'grade'}); g.fit()
    return SimpleNamespace(out=out, climb=out/'done', grade=out/'grade')


@pytest.fixture(scope='module')
def aurora_db(tmp_path_factory):
    "A small valid Kilter-like database the Aurora cases break in one way each."
    return make_aurora_test_db(tmp_path_factory.mktemp('aurora')/'kilter.db', n_climbs=150)


# ------------------------------------------------------------------------- 1. parameters (start_run, in process)
def P(task, params, *needles, id): return pytest.param(task, params, needles, id=id)

PARAM_CASES = [
    # unknown names: one sentence with a suggestion
    P('climb', {'learning_rate': 0.1}, "Unknown parameter 'learning_rate'", "did you mean 'lr'", id='unknown-learning_rate'),
    P('climb', {'batchsize': 8}, "Unknown parameter 'batchsize'", "did you mean 'batch_size'", id='unknown-batchsize'),
    P('climb', {'n_layer': 2}, "Unknown parameter 'n_layer'", "did you mean 'n_layers'", id='unknown-n_layer'),
    P('climb', {'dmodel': 64}, "Unknown parameter 'dmodel'", "did you mean 'd_model'", id='unknown-dmodel'),
    P('climb', {'n_head': 2}, "Unknown parameter 'n_head'", "did you mean 'n_heads'", id='unknown-n_head'),
    P('climb', {'dim_feed_forward': 64}, "Unknown parameter 'dim_feed_forward'", "did you mean 'dim_feedforward'", id='unknown-dim_feed_forward'),
    P('climb', {'epocs': 3}, "Unknown parameter 'epocs'", "did you mean 'epochs'", id='unknown-epocs'),
    P('climb', {'xyzzy': 1}, "Unknown parameter 'xyzzy'", id='unknown-xyzzy-no-suggestion'),
    P('climb', {'arch': 'mlp'}, "Unknown parameter 'arch'", id='unknown-grade-only-param-on-climb'),
    P('climb_grade', {'d_model': 64}, "Unknown parameter 'd_model'", id='unknown-climb-only-param-on-grade'),
    # unknown tasks: with a suggestion too
    P(None, {'task': 'clmb'}, "Unknown task 'clmb'", "did you mean 'climb'", id='unknown-task-clmb'),
    P(None, {'task': 'climb-grade'}, "Unknown task 'climb-grade'", "did you mean 'climb_grade'", id='unknown-task-climb-grade'),
    P(None, {'task': 'Synthetic'}, "Unknown task 'Synthetic'", "did you mean 'synthetic'", id='unknown-task-Synthetic'),
    P(None, {'task': 'core'}, "Unknown task 'core'", id='unknown-task-core-module'),
    # wrong types, as papermill or a YAML file hands them over
    P('climb', {'epochs': 'fifty'}, "Parameter 'epochs'", "'fifty'", id='type-epochs-fifty'),
    P('climb', {'epochs': 2.5}, "Parameter 'epochs'", '2.5', id='type-epochs-2.5'),
    P('climb', {'lr': 'abc'}, "Parameter 'lr'", "'abc'", id='type-lr-abc'),
    P('climb', {'batch_size': 1.5}, "Parameter 'batch_size'", '1.5', id='type-batch_size-1.5'),
    P('climb', {'d_model': '32x'}, "Parameter 'd_model'", "'32x'", id='type-d_model-32x'),
    P('climb', {'n_routes': 'many'}, "Parameter 'n_routes'", id='type-n_routes-many'),
    P('climb', {'lookahead': 'maybe'}, "Parameter 'lookahead'", id='type-lookahead-maybe'),
    P('climb', {'epochs': True}, "Parameter 'epochs'", id='type-epochs-True'),
    # zero or negative sizes
    P('climb', {'batch_size': 0}, "Parameter 'batch_size'", id='zero-batch_size'),
    P('climb', {'batch_size': -8}, "Parameter 'batch_size'", id='negative-batch_size'),
    P('climb', {'d_model': 0}, "Parameter 'd_model'", id='zero-d_model'),
    P('climb', {'d_model': -32}, "Parameter 'd_model'", id='negative-d_model'),
    P('climb', {'n_layers': 0}, "Parameter 'n_layers'", id='zero-n_layers'),
    P('climb', {'n_layers': -1}, "Parameter 'n_layers'", id='negative-n_layers'),
    P('climb', {'n_heads': 0}, "Parameter 'n_heads'", id='zero-n_heads'),
    P('climb', {'n_heads': -2}, "Parameter 'n_heads'", id='negative-n_heads'),
    P('climb', {'dim_feedforward': 0}, "Parameter 'dim_feedforward'", id='zero-dim_feedforward'),
    P('climb', {'dim_feedforward': -64}, "Parameter 'dim_feedforward'", id='negative-dim_feedforward'),
    P('climb', {'lr': 0}, "Parameter 'lr'", id='zero-lr'),
    P('climb', {'lr': -1e-3}, "Parameter 'lr'", id='negative-lr'),
    P('climb', {'lr': float('nan')}, "Parameter 'lr'", id='nan-lr'),
    P('climb', {'lr': float('inf')}, "Parameter 'lr'", id='inf-lr'),
    P('climb', {'n_routes': 0}, "Parameter 'n_routes'", id='zero-n_routes'),
    P('climb', {'n_routes': -5}, "Parameter 'n_routes'", id='negative-n_routes'),
    P('climb', {'n_routes': 5}, "Parameter 'n_routes'", id='too-few-n_routes'),
    P('climb', {'warmup_steps': -1}, "Parameter 'warmup_steps'", id='negative-warmup_steps'),
    P('climb', {'grad_accum': 0}, "Parameter 'grad_accum'", id='zero-grad_accum'),
    P('climb', {'threads': -1}, "Parameter 'threads'", id='negative-threads'),
    P('climb', {'max_seq_len': -1}, "Parameter 'max_seq_len'", id='negative-max_seq_len'),
    P('climb', {'max_seq_len': 5}, "Parameter 'max_seq_len'", id='max_seq_len-shorter-than-routes'),
    P('climb', {'dropout': 1.0}, "Parameter 'dropout'", id='dropout-1'),
    P('climb', {'dropout': -0.1}, "Parameter 'dropout'", id='negative-dropout'),
    P('climb', {'valid_frac': 0.0}, "Parameter 'valid_frac'", id='zero-valid_frac'),
    P('climb', {'valid_frac': 1.0}, "Parameter 'valid_frac'", id='valid_frac-1'),
    P('climb', {'save_every': -1}, "Parameter 'save_every'", id='negative-save_every'),
    P('climb', {'patience': -1}, "Parameter 'patience'", id='negative-patience'),
    P('climb', {'weight_decay': -0.1}, "Parameter 'weight_decay'", id='negative-weight_decay'),
    P('climb', {'grad_clip': -1.0}, "Parameter 'grad_clip'", id='negative-grad_clip'),
    P('climb', {'metric_samples': 1}, "Parameter 'metric_samples'", id='metric_samples-1'),
    P('climb', {'layout': -1}, "Parameter 'layout'", id='negative-layout'),
    P('climb', {'freeze_threshold': 0.0}, "Parameter 'freeze_threshold'", id='zero-freeze_threshold'),
    P('climb', {'lookahead_alpha': 0.0}, "Parameter 'lookahead_alpha'", id='zero-lookahead_alpha'),
    P('climb', {'ema': 1.0}, "Parameter 'ema'", id='ema-1'),
    # bad choices and names
    P('climb', {'optimizer': 'adamx'}, "Parameter 'optimizer'", id='optimizer-adamx'),
    P('climb', {'optimizer_state': 'bf16'}, "Parameter 'optimizer_state'", id='bf16-state-without-lamb'),
    P('climb', {'device': 'gpu'}, "Parameter 'device'", id='device-gpu'),
    pytest.param('climb', {'device': 'cuda'}, ("Parameter 'device'",), id='device-cuda-without-gpu',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is here')),
    P('climb', {'name': 'my run'}, "Parameter 'name'", id='name-with-space'),
    P('climb', {'name': '../escape'}, "Parameter 'name'", id='name-with-slash'),
    P('climb', {'name': ''}, "Parameter 'name'", id='name-empty'),
    P('climb', {'resume': 'no/such/run'}, "'no/such/run'", id='resume-missing-folder'),
    P('climb', {'grader': 'no/such/grader'}, "Parameter 'grader'", id='grader-missing-folder'),
    # the grade predictor and the synthetic task have their own shape parameters
    P('climb_grade', {'arch': 'rnn'}, "Parameter 'arch'", id='grade-arch-rnn'),
    P('climb_grade', {'channels': 0}, "Parameter 'channels'", id='grade-zero-channels'),
    P('climb_grade', {'hidden': -1}, "Parameter 'hidden'", id='grade-negative-hidden'),
    P('climb_grade', {'n_layers': -1}, "Parameter 'n_layers'", id='grade-negative-n_layers'),
    P('climb_grade', {'test_frac': 0.6}, "Parameter 'test_frac'", id='grade-test_frac-0.6'),
    P('climb_grade', {'label_sigma': -1.0}, "Parameter 'label_sigma'", id='grade-negative-label_sigma'),
    P('climb_grade', {'epochs': 0}, "Parameter 'epochs'", id='grade-zero-epochs'),
    P('synthetic', {'n_samples': 0}, "Parameter 'n_samples'", id='synthetic-zero-n_samples'),
    P('synthetic', {'d_in': 0}, "Parameter 'd_in'", id='synthetic-zero-d_in'),
    P('synthetic', {'n_classes': 1}, "Parameter 'n_classes'", id='synthetic-one-class'),
    P('synthetic', {'hidden': '0'}, "Parameter 'hidden'", id='synthetic-hidden-0'),
    P('synthetic', {'hidden': 'wide'}, "Parameter 'hidden'", id='synthetic-hidden-wide'),
    P('synthetic', {'fused': 'sometimes'}, "Parameter 'fused'", id='synthetic-fused-sometimes'),
]


@pytest.mark.parametrize('task, params, needles', PARAM_CASES)
def test_bad_parameter(prev, task, params, needles):
    before = tree(prev.out)
    e = catch(lambda: start_run({**BASE[task], 'out_dir': prev.out, **params}))
    unchanged(before, prev.out)  # no new run folder, nothing of the finished runs touched
    assert not partials(prev.out)
    check_message(e, *needles)


# --------------------------------------------------------------------- 2. config files (resolve_run_config)
CONFIG_CASES = [
    pytest.param({}, 'missing.yaml', ('{main}', 'does not exist'), id='config-missing'),
    pytest.param({'c.yaml': 'epochs: [1,\n  lr: 2\n'}, 'c.yaml', ('{main}', 'YAML'), id='config-not-yaml'),
    pytest.param({'c.yaml': '- 1\n- 2\n'}, 'c.yaml', ('{main}', 'mapping'), id='config-a-list'),
    pytest.param({'c.yaml': 'extends: base.yaml\nepochs: 3\n'}, 'c.yaml', ('base.yaml', '{main}'), id='config-extends-missing'),
    pytest.param({'a.yaml': 'extends: b.yaml\n', 'b.yaml': 'extends: a.yaml\n'}, 'a.yaml', ('extends itself',), id='config-extends-cycle'),
    pytest.param({'c.yaml': 'batchsize: 8\n'}, 'c.yaml', ("Unknown parameter 'batchsize'", "did you mean 'batch_size'", '{main}'),
                 id='config-unknown-key-names-file'),
    pytest.param({'c.yaml': 'epochs: fifty\n'}, 'c.yaml', ("Parameter 'epochs'", "'fifty'", '{main}'), id='config-bad-type-names-file'),
]


@pytest.mark.parametrize('files, main, needles', CONFIG_CASES)
def test_bad_config_file(tmp_path, files, main, needles):
    for name, text in files.items(): (tmp_path/name).write_text(text)
    main_path = str((tmp_path/main).resolve())
    before = tree(tmp_path)
    raises_clearly(lambda: resolve_run_config({**QUIET, 'out_dir': tmp_path/'runs', 'config': tmp_path/main}),
                   *(n.replace('{main}', main_path) for n in needles))
    unchanged(before, tmp_path)


# ------------------------------------------------------------------------------------- 3. papermill -p values
PAPERMILL_CASES = [
    pytest.param({'epochs': 'fifty'}, ("Parameter 'epochs'", "'fifty'"), id='pm-epochs-fifty'),
    pytest.param({'lr': 'abc'}, ("Parameter 'lr'", "'abc'"), id='pm-lr-abc'),
    pytest.param({'batch_size': 1.5}, ("Parameter 'batch_size'", '1.5'), id='pm-batch_size-1.5'),
    pytest.param({'d_model': -8}, ("Parameter 'd_model'",), id='pm-d_model-negative'),
]


@pytest.mark.parametrize('params, needles', PAPERMILL_CASES)
def test_papermill_bad_value(tmp_path, params, needles):
    out_nb, runs = tmp_path/'out.ipynb', tmp_path/'runs'
    p = papermill(out_nb, {**TINY, 'out_dir': runs, **params}, check=False)
    assert p.returncode != 0, 'papermill finished although a parameter was wrong'
    errors = [o for c in json.loads(out_nb.read_text())['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert errors, f'no error in the rendered notebook:\n{notebook_text(out_nb)[-1500:]}'
    ename, evalue = errors[0]['ename'], errors[0]['evalue']
    assert ename == 'ClimbkitError', f'{ename}: {evalue[:300]}'
    assert '\n' not in evalue.strip(), f'not one sentence: {evalue[:300]!r}'
    for n in needles: assert n in evalue, f'{n!r} not in {evalue[:300]!r}'
    assert any(n in p.stdout + p.stderr for n in needles[:1]), 'the sentence is not in papermill\'s own output'
    assert not runs.exists(), 'a run folder was made for a run that could not start'


# ------------------------------------------------------------------------------------------- 4. route data files
GOOD = [{'Grade': '6B+', 'Moves': ['C3', f'{c}{r}', 'D18']} for c in 'ABCDEFGHIJK' for r in range(5, 16)]
rows = lambda recs: json.dumps(recs)
FOLDER = object()

DATA_CASES = [
    pytest.param('routes.json', '', ('is empty',), id='empty'),
    pytest.param('routes.json', '  \n\n\t\n', ('is empty',), id='whitespace-only'),
    pytest.param('routes.json', '\ufeff', ('is empty',), id='bom-only'),
    pytest.param('routes.json', json.dumps(GOOD, indent=1)[:1500], (), id='truncated-json-indented'),
    pytest.param('routes.json', rows(GOOD)[:777], (), id='truncated-json-one-line'),
    pytest.param('routes.jsonl', '\n'.join(map(json.dumps, GOOD[:5]))[:-9], ('line 5',), id='truncated-json-lines'),
    pytest.param('routes.json', 'Grade,Moves\n7A,A5 F9 D18\n', (), id='csv-not-json'),
    pytest.param('routes.json', random.Random(0).randbytes(4096), (), id='random-bytes'),
    pytest.param('routes.json', '[1, 2, 3]', (('int', 'number'),), id='list-of-numbers'),
    pytest.param('routes.json', '["A5", "B18"]', (('str', 'string'),), id='list-of-strings'),
    pytest.param('routes.json', '[[1, 2], [3]]', ('list',), id='list-of-lists'),
    pytest.param('routes.json', '[]', (), id='empty-list'),
    pytest.param('routes.json', '{"name": "my board", "count": 3}', ('name',), id='dict-without-routes'),
    pytest.param('routes.json', '{"routes": "none"}', ('routes',), id='dict-routes-not-a-list'),
    pytest.param('routes.json', '42', (), id='json-number'),
    pytest.param('routes.json', 'null', (), id='json-null'),
    pytest.param('routes.json', rows([{'Grade': '7A', 'Holds': ['A5', 'F9', 'D18']}] * 20), ("'Moves'",), id='records-without-moves'),
    pytest.param('routes.json', rows([{'Grade': '7A', 'Moves': 'A5 F9 D18'}] * 20), ("'Moves'",), id='moves-a-string'),
    pytest.param('routes.json', rows([{'Grade': '7A', 'Moves': [{'IsStart': True}, {'IsEnd': True}]}] * 20), ('None',),
                 id='moves-without-description'),
    pytest.param('routes.json', rows([{'Grade': '7A', 'Moves': ['A5', 'Z9', 'D18']}] * 20), ("'Z9'",), id='unknown-hold-Z9'),
    pytest.param('routes.json', rows([{'Grade': '7A', 'Moves': ['A5', 'F9', 'A19']}] * 20), ("'A19'",), id='unknown-hold-A19-off-top'),
    pytest.param('routes.json', rows([{'Grade': '7A', 'Moves': ['K0', 'F9', 'D18']}] * 20), ("'K0'",), id='unknown-hold-K0'),
    pytest.param('routes.json', rows([{'Grade': 'V5', 'Moves': ['A5', 'F9', 'D18']}] * 20), ("'V5'",), id='unknown-grade-V5'),
    pytest.param('routes.json', rows([{'Grade': '', 'Moves': ['A5', 'F9', 'D18']}] * 20), ("grade ''",), id='unknown-grade-empty'),
    pytest.param('routes.json', rows([{'Grade': 7, 'Moves': ['A5', 'F9', 'D18']}] * 20), ('grade 7',), id='unknown-grade-number'),
    pytest.param('routes.json', rows([{'Grade': None, 'Moves': ['A5', 'F9', 'D18']}] * 20), ("'Grade'",), id='grade-null'),
    pytest.param('routes.db', 'this is not a database\n', (), id='text-with-db-extension'),
    pytest.param('routes', FOLDER, ('folder',), id='a-folder'),
]


def _via_load_route_file(path, prev): return load_route_file(path)
def _via_climb_tensors(path, prev): return climb_tensors(str(path), n_routes=600)
def _via_start_run(path, prev): return start_run({**QUIET, 'out_dir': prev.out, 'data': str(path)})
def _via_start_run_grade(path, prev): return start_run({**BASE['climb_grade'], 'out_dir': prev.out, 'data': str(path)})
DATA_ENTRIES = [pytest.param(f, id=f.__name__[5:]) for f in (_via_load_route_file, _via_climb_tensors, _via_start_run, _via_start_run_grade)]


@pytest.mark.parametrize('entry', DATA_ENTRIES)
@pytest.mark.parametrize('name, content, needles', DATA_CASES)
def test_bad_route_file(tmp_path, prev, entry, name, content, needles):
    f = tmp_path/name
    if content is FOLDER: f.mkdir()
    else: f.write_bytes(content if isinstance(content, bytes) else content.encode())
    before_file, before_runs = tree(tmp_path), tree(prev.out)
    e = catch(lambda: entry(f, prev))
    unchanged(before_file, tmp_path)   # the data file is never touched
    unchanged(before_runs, prev.out)
    assert not partials(tmp_path, prev.out, cache_root())
    check_message(e, str(f), *needles)


@pytest.mark.parametrize('content', [
    pytest.param(rows([{'Grade': '7A', 'Moves': ['A5', 'Z9', 'D18']}] * 20), id='all-unknown-holds'),
    pytest.param(rows([{'Grade': '9Z', 'Moves': ['A5', 'F9', 'D18']}] * 20), id='all-unknown-grades'),
])
def test_all_rejected_names_the_record(tmp_path, content):
    "When every record is rejected, the sentence says which record its example reason is from."
    f = tmp_path/'routes.json'; f.write_text(content)
    raises_clearly(lambda: load_route_file(f), str(f), 'record 0')


# ----------------------------------------------------------------------------------- 5. Aurora sqlite databases
def _sqlite(*stmts, base=False):
    def make(p, db):
        if base: shutil.copy(db, p)
        with sqlite3.connect(p) as con:
            for s in stmts: con.execute(s)
        con.close()
    return make

def _bytes(fn):
    def make(p, db): p.write_bytes(fn(Path(db).read_bytes()))
    return make

def A(make, kw, *needles, id): return pytest.param(make, kw, needles, id=id)

AURORA_CASES = [
    A(_bytes(lambda b: b''), {}, '{f}', ('sqlite', 'empty'), id='zero-byte-db'),
    A(_sqlite('PRAGMA user_version = 1'), {}, '{f}', 'climbs', id='empty-sqlite-db'),
    A(_sqlite('CREATE TABLE songs (id INTEGER, title TEXT)', "INSERT INTO songs VALUES (1, 'x')"), {}, '{f}', 'climbs', id='unrelated-tables'),
    A(_bytes(lambda b: b'id,frames\n1,p1r12\n'), {}, '{f}', 'sqlite', id='csv-with-db-extension'),
    A(_bytes(lambda b: random.Random(1).randbytes(8192)), {}, '{f}', 'sqlite', id='random-bytes-db'),
    A(_bytes(lambda b: b'SQLite format 3\x00' + random.Random(2).randbytes(8192)), {}, '{f}', id='sqlite-header-then-garbage'),
    A(_bytes(lambda b: b[:len(b) // 3]), {}, '{f}', id='truncated-db'),
    A(_sqlite('CREATE TABLE c2 AS SELECT uuid, layout_id, name FROM climbs', 'DROP TABLE climbs', 'ALTER TABLE c2 RENAME TO climbs', base=True),
      {}, '{f}', 'climbs.frames', id='climbs-without-frames-column'),
    A(_sqlite('DROP TABLE climb_stats', base=True), {}, '{f}', 'climb_stats', id='no-climb_stats-table'),
    A(_sqlite('DELETE FROM climbs', base=True), {}, '{f}', 'angle=40', id='no-climbs'),
    A(_sqlite("UPDATE climbs SET frames = 'garbage'", base=True), {}, '{f}', 'malformed frames', id='all-frames-malformed'),
    A(_sqlite("UPDATE climbs SET frames = replace(frames, 'p1', 'p7')", base=True), {}, '{f}', 'placement', id='unknown-placements'),
    A(_sqlite("UPDATE difficulty_grades SET boulder_name = 'V' || (difficulty - 10)", base=True), {}, '{f}', 'Font grade', id='unknown-grades'),
    A(_sqlite('DELETE FROM difficulty_grades', base=True), {}, '{f}', 'difficulty_grades', id='empty-difficulty_grades'),
    A(_sqlite(base=True), {'angle': 70}, '{f}', 'angle=70', id='angle-without-climbs'),
    A(_sqlite(base=True), {'layout': 99}, '{f}', "Parameter 'layout'", id='layout-not-in-db'),
    A(_sqlite(base=True), {'layout': -1}, "Parameter 'layout'", id='negative-layout'),
    A(_sqlite(base=True), {'angle': 'forty'}, "Parameter 'angle'", id='angle-forty'),
]


def _aurora_direct(path, kw, prev): return load_aurora_db(path, **kw)
def _aurora_start_run(path, kw, prev): return start_run({**QUIET, 'out_dir': prev.out, 'data': str(path), **kw})
AURORA_ENTRIES = [pytest.param(_aurora_direct, id='load_aurora_db'), pytest.param(_aurora_start_run, id='start_run')]


@pytest.mark.parametrize('entry', AURORA_ENTRIES)
@pytest.mark.parametrize('make, kw, needles', AURORA_CASES)
def test_bad_aurora_db(tmp_path, prev, aurora_db, entry, make, kw, needles):
    f = tmp_path/'board.db'
    make(f, aurora_db)
    before_file, before_runs = tree(tmp_path), tree(prev.out)
    e = catch(lambda: entry(f, kw, prev))
    unchanged(before_file, tmp_path)  # opened read-only: no journal, no change
    unchanged(before_runs, prev.out)
    assert not partials(tmp_path, prev.out, cache_root())
    check_message(e, *(n.replace('{f}', str(f)) if isinstance(n, str) else n for n in needles))


# ---------------------------------------------------------------------------------------------- 6. checkpoints
def _ckpt(fn):
    "Write a bad checkpoint made by `fn(good bytes, good dict) -> bytes` to a path."
    def make(p, good_bytes, good): p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(fn(good_bytes, good))
    return make

def _torch_bytes(obj) -> bytes: buf = io.BytesIO(); torch.save(obj, buf); return buf.getvalue()

def _reshaped(ck:dict) -> dict:
    "The checkpoint with one tensor of another shape (weights from another model, config unchanged)."
    m = dict(ck['model']); k = 'blocks.0.ln1.weight' if 'blocks.0.ln1.weight' in m else next(iter(m))
    m[k] = torch.zeros(m[k].shape[0] + 3, *m[k].shape[1:])
    return {**ck, 'model': m}

CKPT_MAKERS = {
    'empty-file': _ckpt(lambda b, c: b''),
    '10-bytes': _ckpt(lambda b, c: b[:10]),
    'half': _ckpt(lambda b, c: b[:len(b) // 2]),
    'last-100-bytes-cut': _ckpt(lambda b, c: b[:-100]),
    'random-bytes': _ckpt(lambda b, c: random.Random(3).randbytes(len(b))),
    'text': _ckpt(lambda b, c: b'not a checkpoint\n'),
    'plain-pickle-list': _ckpt(lambda b, c: pickle.dumps([1, 2, 3])),
    'a-tensor': _ckpt(lambda b, c: _torch_bytes(torch.ones(3))),
    'state_dict-only': _ckpt(lambda b, c: _torch_bytes(c['model'])),
    'unknown-format-tag': _ckpt(lambda b, c: _torch_bytes({**c, 'format': 'climbkit-checkpoint-99'})),
}


@pytest.mark.parametrize('kind', ['missing', 'folder', *CKPT_MAKERS])
def test_load_checkpoint_file(tmp_path, prev, kind):
    src = prev.climb/'checkpoints'/'latest.pt'
    p = tmp_path/'checkpoints'/'latest.pt'
    if kind == 'folder': p.mkdir(parents=True)
    elif kind != 'missing': CKPT_MAKERS[kind](p, src.read_bytes(), torch.load(src, weights_only=False))
    before = tree(tmp_path)
    raises_clearly(lambda: load_checkpoint_file(p), str(p))
    unchanged(before, tmp_path)


def _spoil(checkpoint, kind):
    "A preparation that replaces the run's `checkpoint` by a bad one of `kind`."
    def prep(run, prev):
        p = run/'checkpoints'/checkpoint
        CKPT_MAKERS[kind](p, p.read_bytes(), torch.load(p, weights_only=False))
    return prep

def _spoil_the_only(checkpoint, kind):
    "`_spoil`, with every other checkpoint of the run removed first: nothing readable to fall back to (the fallback: tests/test_failed_writes.py)."
    def prep(run, prev):
        for p in (run/'checkpoints').glob('*.pt'):
            if p.name != checkpoint: p.unlink()
        _spoil(checkpoint, kind)(run, prev)
    return prep

def _nothing(run, prev): pass

def R(prep, params, needles, id, src='climb'): return pytest.param(prep, params, needles, src, id=id)
LATEST = '{run}/checkpoints/latest.pt'

RESUME_CASES = [
    # a damaged checkpoint and no readable one beside it (the truncated-at-5000-bytes and the foreign-dict cases are in test_bad_input.py)
    *[R(_spoil_the_only('latest.pt', k), {}, (LATEST,), id=f'latest-{k}') for k in ('empty-file', 'random-bytes', 'text', 'a-tensor', 'state_dict-only', 'last-100-bytes-cut')],
    # another model shape (d_model is in test_bad_input.py)
    R(_nothing, {'n_layers': 2}, (LATEST, 'n_layers=1 (this run: 2)'), id='shape-n_layers'),
    R(_nothing, {'dim_feedforward': 128}, (LATEST, 'dim_feedforward=64 (this run: 128)'), id='shape-dim_feedforward'),
    R(_nothing, {'n_heads': 4}, (LATEST, 'n_heads=2 (this run: 4)'), id='shape-n_heads'),
    R(_nothing, {'max_seq_len': 64}, (LATEST, 'max_seq_len'), id='shape-max_seq_len'),
    R(lambda run, prev: torch.save(_reshaped(torch.load(run/'checkpoints'/'latest.pt', weights_only=False)), run/'checkpoints'/'latest.pt'),
      {}, (LATEST, 'different model'), id='shape-weights-of-another-model'),
    R(lambda run, prev: torch.save({**(c := torch.load(run/'checkpoints'/'latest.pt', weights_only=False)),
                                    'model': {k: v for k, v in c['model'].items() if not k.startswith('blocks.0.ff')}},
                                   run/'checkpoints'/'latest.pt'),
      {}, (LATEST, 'different model'), id='shape-missing-tensors'),
    # another task
    R(_nothing, {**BASE['climb_grade']}, (LATEST, "'climb'", "'climb_grade'"), id='task-climb-run-resumed-as-grade'),
    R(_nothing, {**QUIET}, (LATEST, "'climb_grade'", "'climb'"), id='task-grade-run-resumed-as-climb', src='grade'),
    R(lambda run, prev: shutil.copy(prev.grade/'checkpoints'/'latest.pt', run/'checkpoints'/'latest.pt'),
      {}, (LATEST, "'climb_grade'"), id='task-grade-checkpoint-in-climb-run'),
    # not a run to resume
    R(lambda run, prev: shutil.rmtree(run/'checkpoints'), {}, ('{run}',), id='folder-without-checkpoints'),
]


@pytest.mark.parametrize('prep, params, needles, src', RESUME_CASES)
def test_bad_resume(tmp_path, prev, prep, params, needles, src):
    run = copy_run(getattr(prev, src), tmp_path/'runs')
    prep(run, prev)
    before = tree(run)
    base = params if params else QUIET
    e = catch(lambda: start_run({**base, 'out_dir': tmp_path/'runs', 'resume': run}))
    unchanged(before, run)
    assert not list(run.glob('config.resume*')), 'a failed resume left a config.resume file'
    assert sorted(p.name for p in (tmp_path/'runs').iterdir()) == [run.name], 'a failed resume made another run folder'
    assert not partials(tmp_path)
    check_message(e, *(n.replace('{run}', str(run)) for n in needles))


@pytest.mark.parametrize('how', ['resume-True-other-task', 'resume-a-file', 'resume-truncated-pt-path'])
def test_bad_resume_target(tmp_path, prev, how):
    run = copy_run(prev.climb, tmp_path/'runs')
    if how == 'resume-True-other-task':
        call, needles = lambda: start_run({**BASE['synthetic'], 'out_dir': tmp_path/'runs', 'resume': True}), (str(tmp_path/'runs'), 'synthetic')
    elif how == 'resume-a-file':
        call, needles = lambda: start_run({**QUIET, 'out_dir': tmp_path/'runs', 'resume': str(run/'config.json')}), (str(run/'config.json'),)
    else:
        p = run/'checkpoints'/'latest.pt'; p.write_bytes(p.read_bytes()[:3000])
        call, needles = lambda: start_run({**QUIET, 'out_dir': tmp_path/'runs', 'resume': str(p)}), (str(p),)
    before = tree(tmp_path/'runs')
    e = catch(call)
    unchanged(before, tmp_path/'runs')
    check_message(e, *needles)


def test_failed_resume_leaves_the_lock_file_alone(tmp_path, prev):
    "The one file the checks above leave out: a resume that is refused should not rewrite the run's .lock either."
    run = copy_run(prev.climb, tmp_path/'runs')
    lock = run/'.lock'
    before = lock.read_bytes() if lock.exists() else None
    raises_clearly(lambda: start_run({**QUIET, 'out_dir': tmp_path/'runs', 'resume': run, 'n_layers': 2}), 'n_layers')
    after = lock.read_bytes() if lock.exists() else None
    assert after == before, f'.lock changed from {before!r} to {after!r}'


# ------------------------------------------------------------------------------ 7. loading trained runs
def _write_cfg(**changes):
    def prep(run, prev):
        cfg = json.loads((run/'config.json').read_text()); cfg.update(changes)
        (run/'config.json').write_text(json.dumps(cfg))
    return prep

def _cfg_only(keep):
    def prep(run, prev):
        cfg = json.loads((run/'config.json').read_text())
        (run/'config.json').write_text(json.dumps({k: cfg[k] for k in keep}))
    return prep

def _best_from(other):
    def prep(run, prev): shutil.copy(getattr(prev, other)/'checkpoints'/'best.pt', run/'checkpoints'/'best.pt')
    return prep

def _best_reshaped(run, prev):
    p = run/'checkpoints'/'best.pt'; torch.save(_reshaped(torch.load(p, weights_only=False)), p)

def _gone(run, prev): shutil.rmtree(run)

BEST = '{run}/checkpoints/best.pt'
def L(src, prep, kw, needles, id): return pytest.param(src, prep, kw, needles, id=id)

GENERATOR_CASES = [
    L('grade', _nothing, {}, ('{run}', "'climb_grade'"), id='a-grade-run'),
    L('climb', _gone, {}, ('{run}',), id='missing-folder'),
    L('climb', lambda run, prev: (run/'config.json').write_text('{"task": "climb", '), {}, ('{run}/config.json',), id='config-not-json'),
    L('climb', _cfg_only(('task', 'data', 'n_routes')), {}, (('{run}/config.json', "'d_model'"),), id='config-without-model-shape'),
    L('climb', _write_cfg(data='/nonexistent/routes.json'), {}, ('/nonexistent/routes.json',), id='data-file-gone'),
    L('climb', _spoil('best.pt', 'half'), {}, (BEST,), id='best-truncated'),
    L('climb', _spoil('best.pt', 'random-bytes'), {}, (BEST,), id='best-random-bytes'),
    L('climb', _spoil('best.pt', 'state_dict-only'), {}, (BEST,), id='best-state_dict-only'),
    L('climb', _best_reshaped, {}, (BEST, 'different model'), id='best-weights-of-another-shape'),
    L('climb', _write_cfg(d_model=64, n_heads=2), {}, (BEST, 'd_model=32 (this run: 64)'), id='config-of-another-shape'),
    L('climb', _best_from('grade'), {}, (BEST, 'climb_grade'), id='best-from-grade-task'),
    L('climb', _nothing, {'checkpoint': 'epoch_99.pt'}, ('epoch_99.pt',), id='no-such-checkpoint'),
]

GRADER_CASES = [
    L('climb', _nothing, {}, ('{run}', "'climb'"), id='a-climb-run'),
    L('grade', _gone, {}, ('{run}',), id='missing-folder'),
    L('grade', _cfg_only(('task', 'data', 'n_routes')), {}, (('{run}/config.json', "'hidden'"),), id='config-without-model-shape'),
    L('grade', _spoil('best.pt', 'half'), {}, (BEST,), id='best-truncated'),
    L('grade', _spoil('best.pt', 'text'), {}, (BEST,), id='best-text'),
    L('grade', _write_cfg(hidden=16), {}, (BEST, 'hidden=8 (this run: 16)'), id='config-of-another-shape'),
    L('grade', _best_from('climb'), {}, (BEST, "'climb'"), id='best-from-climb-task'),
    L('grade', lambda run, prev: (run/'checkpoints'/'best.pt').unlink(), {}, ('best.pt',), id='no-best-checkpoint'),
]


def _check_loader(tmp_path, prev, loader, src, prep, kw, needles):
    run = copy_run(getattr(prev, src), tmp_path/'runs')
    prep(run, prev)
    before = tree(tmp_path/'runs')
    sub = lambda n: tuple(a.replace('{run}', str(run)) for a in n) if isinstance(n, tuple) else n.replace('{run}', str(run))
    e = catch(lambda: loader(run, **kw))
    unchanged(before, tmp_path/'runs')
    assert not partials(tmp_path)
    check_message(e, *map(sub, needles))


@pytest.mark.parametrize('src, prep, kw, needles', GENERATOR_CASES)
def test_load_generator(tmp_path, prev, src, prep, kw, needles): _check_loader(tmp_path, prev, load_generator, src, prep, kw, needles)


@pytest.mark.parametrize('src, prep, kw, needles', GRADER_CASES)
def test_load_grader(tmp_path, prev, src, prep, kw, needles): _check_loader(tmp_path, prev, load_grader, src, prep, kw, needles)


# ---------------------------------------------------------------------------- 8. an output folder that cannot be written
def test_out_dir_is_a_file(tmp_path, prev):
    f = tmp_path/'runs'; f.write_text('not a folder\n')
    e = catch(lambda: start_run({**QUIET, 'out_dir': f}))
    assert f.read_text() == 'not a folder\n' and sorted(p.name for p in tmp_path.iterdir()) == ['runs']
    check_message(e, str(f))


def test_out_dir_under_a_file(tmp_path):
    f = tmp_path/'runs'; f.write_text('not a folder\n')
    e = catch(lambda: start_run({**QUIET, 'out_dir': f/'sub'}))
    assert f.read_text() == 'not a folder\n' and sorted(p.name for p in tmp_path.iterdir()) == ['runs']
    check_message(e, str(f))


# Each promise is tested twice: with a read-only folder and with a regular file where the run needs a folder. Root
# writes into read-only folders, so as root (CI) the read-only variant runs `start_run` in a child process that has given
# up every capability first (`start_unprivileged`); the file in the way stops root as well.


@pytest.mark.parametrize('where, how', [
    pytest.param('out_dir', 'read-only', id='out_dir-read-only'),
    pytest.param('out_dir', 'file-in-the-way', id='run-folder-name-taken-by-a-file'),
    pytest.param('parent-of-out_dir', 'read-only', id='parent-of-out_dir-read-only'),
    pytest.param('parent-of-out_dir', 'file-in-the-way', id='parent-of-out_dir-is-a-file'),
])
def test_out_dir_not_writable(tmp_path, where, how):
    "No run folder can be made: a clear sentence naming the path in the way, and nothing is written."
    ro = tmp_path/'ro'
    if how == 'read-only': ro.mkdir(); ro.chmod(0o500); blocked = ro
    elif where == 'out_dir': ro.mkdir(); blocked = ro/'r'; blocked.write_text('not a run\n')  # out_dir is fine; the run's name is taken
    else: blocked = ro; ro.write_text('not a folder\n')
    out = ro if where == 'out_dir' else ro/'runs'
    before = tree(tmp_path)
    try:
        params = {**QUIET, 'out_dir': out, 'name': 'r'}
        e = start_run_blocked(params, blocked) if how == 'read-only' else catch(lambda: start_run(params))
        unchanged(before, tmp_path)
    finally:
        if how == 'read-only': ro.chmod(0o700)
    assert not partials(tmp_path)
    check_message(e, str(blocked))


@pytest.mark.parametrize('how', [pytest.param('read-only'),
                                 pytest.param('figures', id='figures-is-a-file'),
                                 pytest.param('tb', id='tb-is-a-file')])
def test_resume_into_a_run_folder_that_cannot_be_written(tmp_path, prev, how):
    "Refused before anything is written, with a sentence naming the run folder (and the file in the way): nothing saved is lost."
    run = copy_run(prev.climb, tmp_path/'runs')
    if how != 'read-only': shutil.rmtree(run/how); (run/how).write_text('in the way\n')  # where the run saves its figures / events
    before = tree(run)
    if how == 'read-only': run.chmod(0o500)
    params = {**QUIET, 'out_dir': tmp_path/'runs', 'resume': run, 'epochs': 3}
    try: e = start_run_blocked(params, run) if how == 'read-only' else catch(lambda: start_run(params))
    finally:
        if how == 'read-only': run.chmod(0o700)
    unchanged(before, run)
    assert not partials(run)
    check_message(e, str(run) if how == 'read-only' else str(run/how))


# --------------------------------------------------------------------------------------------- 9. a full disk
class _FullFile:
    "A file on a disk that fills up half-way through the write."
    def __init__(self, f): self._f = f
    def write(self, data):
        self._f.write(data[:len(data) // 2]); self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    def __enter__(self): return self
    def __exit__(self, *exc): self._f.close()
    def __getattr__(self, n): return getattr(self._f, n)


def _fd_path(fd) -> str:
    try: return os.readlink(f'/proc/self/fd/{fd}')
    except OSError: return ''


class _FullDiskOS:
    "What `climbkit.core` sees as `os`: writes, fsyncs or renames of paths where `hit(path)` fail with ENOSPC."
    def __init__(self, hit, stage): self._hit, self._stage = hit, stage
    def __getattr__(self, n): return getattr(os, n)
    def fdopen(self, fd, *a, **kw):
        f = os.fdopen(fd, *a, **kw)
        return _FullFile(f) if self._stage == 'write' and self._hit(_fd_path(fd)) else f
    def fsync(self, fd):
        if self._stage == 'fsync' and self._hit(_fd_path(fd)): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.fsync(fd)
    def replace(self, src, dst, **kw):
        if self._stage == 'replace' and self._hit(str(dst)):  # as the kernel reports it: both names
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))
        return os.replace(src, dst, **kw)


def _trained_one_epoch(tmp_path):
    _, learn = start_run({**QUIET, 'out_dir': tmp_path/'runs', 'name': 'r', 'save_every': 1})
    learn.fit(1)
    return learn, learn.run_dir


@pytest.mark.skipif(not Path('/proc/self/fd').exists(), reason='needs /proc to tell which file a descriptor writes')
@pytest.mark.parametrize('stage', ['write', 'fsync', 'replace'])
def test_disk_full_during_checkpoint_save(tmp_path, monkeypatch, stage):
    "Epoch 2's checkpoint save hits a full disk: epoch 1's checkpoints stay intact, no temporary is left, the error names the file."
    learn, run = _trained_one_epoch(tmp_path)
    ck_before = tree(run/'checkpoints')
    monkeypatch.setattr(core, 'os', _FullDiskOS(lambda p: f'{os.sep}checkpoints{os.sep}' in p, stage))
    e = catch(lambda: learn.fit(2))
    monkeypatch.undo()
    unchanged(ck_before, run/'checkpoints')
    assert not partials(tmp_path)
    check_message(e, 'latest.pt', kinds=(ClimbkitError, OSError))


@pytest.mark.skipif(not Path('/proc/self/fd').exists(), reason='needs /proc to tell which file a descriptor writes')
def test_disk_full_for_every_write_after_epoch_1(tmp_path, monkeypatch):
    "The whole disk fills after epoch 1: every file of the run (TensorBoard's own writer aside) stays as epoch 1 left it."
    learn, run = _trained_one_epoch(tmp_path)
    before = tree(run, skip_top=('tb',))
    monkeypatch.setattr(core, 'os', _FullDiskOS(lambda p: p.startswith(str(tmp_path)), 'write'))
    e = catch(lambda: learn.fit(2))
    monkeypatch.undo()
    unchanged(before, run, skip_top=('tb',))
    assert not partials(tmp_path)
    check_message(e, str(run), kinds=(ClimbkitError, OSError))


@pytest.mark.skipif(not Path('/proc/self/fd').exists(), reason='needs /proc to tell which file a descriptor writes')
def test_disk_full_when_a_run_starts(tmp_path, monkeypatch):
    "config.json cannot be written: the error names it, nothing half-written stays, and the name can be used again."
    out = tmp_path/'runs'
    monkeypatch.setattr(core, 'os', _FullDiskOS(lambda p: p.startswith(str(out)), 'write'))
    e = catch(lambda: start_run({**QUIET, 'out_dir': out, 'name': 'r'}))
    monkeypatch.undo()
    assert not partials(tmp_path) and not (out/'r'/'config.json').exists()
    start_run({**QUIET, 'out_dir': out, 'name': 'r'})  # the folder does not count as a run
    check_message(e, 'config.json', kinds=(ClimbkitError, OSError))


@pytest.mark.skipif(not Path('/proc/self/fd').exists(), reason='needs /proc to tell which file a descriptor writes')
def test_disk_full_when_a_run_resumes(tmp_path, prev, monkeypatch):
    run = copy_run(prev.climb, tmp_path/'runs')
    before = tree(run)
    monkeypatch.setattr(core, 'os', _FullDiskOS(lambda p: p.startswith(str(run)), 'write'))
    e = catch(lambda: start_run({**QUIET, 'out_dir': tmp_path/'runs', 'resume': run, 'epochs': 3}))
    monkeypatch.undo()
    unchanged(before, run)
    assert not partials(tmp_path)
    check_message(e, str(run), kinds=(ClimbkitError, OSError))


# ------------------------------------------------------------------------------------------ 10. bench.profile
PROFILE_CASES = [
    pytest.param({'batchsize': 8}, {}, ("Unknown parameter 'batchsize'", "did you mean 'batch_size'"), id='unknown-param'),
    pytest.param({'task': 'clmb'}, {}, ("Unknown task 'clmb'",), id='unknown-task'),
    pytest.param({'batch_size': 0}, {}, ("Parameter 'batch_size'",), id='zero-batch_size'),
    pytest.param({'d_model': -4}, {}, ("Parameter 'd_model'",), id='negative-d_model'),
    pytest.param({'resume': True}, {}, ("Parameter 'resume'",), id='resume'),
    pytest.param({'data': 'missing.json'}, {}, ("Parameter 'data'", 'missing.json'), id='missing-data'),
    pytest.param({}, {'measure': 0}, ("'measure'",), id='measure-0'),
    pytest.param({}, {'warmup': -1}, ("'warmup'",), id='warmup-negative'),
    pytest.param({}, {'project': 'many'}, ("'project'",), id='project-a-string'),
]


@pytest.mark.parametrize('params, kw, needles', PROFILE_CASES)
def test_bad_profile(tmp_path, monkeypatch, params, kw, needles):
    monkeypatch.chdir(tmp_path)
    e = catch(lambda: profile({**QUIET, **params}, **kw))
    assert list(tmp_path.iterdir()) == [], 'profile wrote files'
    check_message(e, *needles)


# ----------------------------------------------------------------------------- 11. synthetic_data, climb_tensors
SYNTHETIC_CASES = [
    pytest.param(dict(n=0), ('n=0',), id='n-0'),
    pytest.param(dict(n=-5), ('n=-5',), id='n-negative'),
    pytest.param(dict(n=10, d_in=0), ('d_in=0',), id='d_in-0'),
    pytest.param(dict(n=10, d_in=-3), ('d_in=-3',), id='d_in-negative'),
    pytest.param(dict(n=10, n_classes=1), ('n_classes=1',), id='n_classes-1'),
    pytest.param(dict(n=10, n_classes=0), ('n_classes=0',), id='n_classes-0'),
    pytest.param(dict(n='100'), ("'100'", ), id='n-a-string'),
    pytest.param(dict(n=2.5), ('2.5',), id='n-a-fraction'),
]


@pytest.mark.parametrize('kw, needles', SYNTHETIC_CASES)
def test_bad_synthetic_data(kw, needles):
    raises_clearly(lambda: synthetic_data(**{'d_in': 8, **kw}), *needles)


CLIMB_TENSORS_CASES = [
    pytest.param(dict(data='builtin', n_routes=0), ('n_routes',), id='builtin-n_routes-0'),
    pytest.param(dict(data='builtin', n_routes=-5), ('n_routes',), id='builtin-n_routes-negative'),
    pytest.param(dict(data=''), ("Parameter 'data'",), id='data-empty-string'),
    pytest.param(dict(data='{db}', angle='forty'), ("Parameter 'angle'",), id='aurora-angle-forty'),
    pytest.param(dict(data='{db}', layout=-1), ("Parameter 'layout'",), id='aurora-layout-negative'),
]


@pytest.mark.parametrize('kw, needles', CLIMB_TENSORS_CASES)
def test_bad_climb_tensors(aurora_db, kw, needles):
    kw = {k: (str(aurora_db) if v == '{db}' else v) for k, v in kw.items()}
    raises_clearly(lambda: climb_tensors(**kw), *needles)
    assert not partials(cache_root(), aurora_db.parent)


# ------------------------------------------------------------------------------------------------ the count
N_PLAIN = 7  # tests below without parameters: 2 out_dir-file, lock, disk full x3, the count
N_CASES = (len(PARAM_CASES) + len(CONFIG_CASES) + len(PAPERMILL_CASES) + len(DATA_CASES) * len(DATA_ENTRIES) + 2
           + len(AURORA_CASES) * len(AURORA_ENTRIES) + (2 + len(CKPT_MAKERS)) + len(RESUME_CASES) + 3
           + len(GENERATOR_CASES) + len(GRADER_CASES) + 4 + 3 + 3 + len(PROFILE_CASES) + len(SYNTHETIC_CASES)
           + len(CLIMB_TENSORS_CASES) + N_PLAIN)


def test_case_count(request):
    "N_CASES is the number of test cases in this file (when the whole file is collected)."
    mine = [i for i in request.session.items if i.path == request.path]
    if request.config.option.keyword or request.config.option.markexpr or len(mine) < N_CASES - 5:
        pytest.skip('a subset was selected')
    print(f'test_bad_input_all.py: {N_CASES} cases')
    assert len(mine) == N_CASES
