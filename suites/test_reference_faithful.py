"""Our reference models held against the article: its recorded fingerprints always, its own code when present.

Two layers, over the same cases and the same procedures (``fingerprints``):
- fingerprint tests (``test_fingerprint_*``) hold our models against ``suites/golden/faithfulness.json``,
  recorded by running THE ARTICLE'S OWN CODE (never ours). They need no article and never skip: state_dict
  keys, shapes and module names, seeded initial weights (sha256), eval and train outputs, gradients and
  running stats (computed in float64; sums and sampled values within one relative tolerance on any
  machine, ``fingerprints.RTOL``), work counts, stage-print bytes, failure types and messages. A planted
  wrong number (a residual scaled by 1.001) must fail them. The float64 passes of the two deepest encoder
  UNets run under ``--hypothesis-profile thorough`` only (``DEEP_CASES`` says what proves them otherwise).
- live tests (``test_live_*``) run the article's code (see article_oracle) side by side with ours and
  ask for exact equality (of the same float64 passes). They need the article at ``../shared/seeds/``
  (or ``$ARTICLE_SEED``) and skip, saying where they looked, without it.

Regenerate the fingerprints (the article must be present; exits 2 otherwise), then commit the JSON:

    python suites/record_fingerprints.py
"""
import hashlib

import pytest
import torch

import article_oracle
import fingerprints as fp
import reference_models as rm
from fingerprints import CASES, FAILURES, STAGE_PRINT_CASES, TRAIN_FAILURE, build, silently

needs_article = pytest.mark.skipif(not article_oracle.available(),
                                   reason=f"live article tests: the article is not at {article_oracle.seed_path()} "
                                          f"(set ARTICLE_SEED); the fingerprint tests still ran")

# The float64 eval and train passes of the two deepest encoder UNets run under ``--hypothesis-profile thorough``
# only: on 2 cores they took half this module's time. Every run still holds these two to the article by their
# structure part (state_dict keys and shapes, module names, the seeded initial weights: sha256 of each tensor)
# and their work part (parameters, MACs by operator, no module left uncalled), and unet3d-resnet50's eval and
# train parts prove the numbers of the same Bottleneck, stages and decoder: 101 and 152 differ from it only in
# how many blocks each stage stacks.
DEEP_CASES = ("unet3d-resnet101", "unet3d-resnet152")


@pytest.fixture(scope="session")
def thorough(request) -> bool:
    return request.config.getoption("hypothesis_profile", None) == "thorough"


def skip_deep_pass(case_id: str, part: str, thorough: bool) -> None:
    if case_id in DEEP_CASES and part in ("eval", "train") and not thorough:
        pytest.skip(f"{case_id}'s float64 {part} pass: under --hypothesis-profile thorough (its structure and "
                    f"work parts ran; unet3d-resnet50's {part} part proves the same blocks' numbers)")


def build_pair(section, class_name, kwargs):
    ours = build(vars(rm), class_name, kwargs)
    theirs = build(article_oracle.namespace(section), class_name, kwargs)
    return ours, theirs


@pytest.fixture(scope="module")
def golden():
    assert fp.GOLDEN_PATH.is_file(), f"no fingerprints at {fp.GOLDEN_PATH}: run {fp.RECORD_COMMAND} with the article"
    return fp.load()


@pytest.fixture(scope="module", params=CASES, ids=[case[0] for case in CASES])
def case(request):
    return request.param


@pytest.fixture(scope="module")
def ours(case):
    """Our model of the case and what the fixed procedures give on it, shared by both layers."""
    _, _, class_name, kwargs, input_shape = case
    return fp.Run(build(vars(rm), class_name, kwargs), input_shape)


@pytest.fixture(scope="module")
def theirs(case):
    _, section, class_name, kwargs, input_shape = case
    return fp.Run(build(article_oracle.namespace(section), class_name, kwargs), input_shape)


@pytest.fixture(scope="module")
def recorded(golden, case):
    entry = golden["cases"].get(case[0])
    assert entry is not None, f"no fingerprints recorded for case {case[0]}: run {fp.RECORD_COMMAND}"
    assert entry["case"] == fp.case_spec(case), f"case {case[0]} changed since it was recorded: run {fp.RECORD_COMMAND}"
    return entry


# --- fingerprint tests: our models against the article's recorded fingerprints ------------------

def test_fingerprints_cover_every_case_and_were_recorded_from_the_article(golden):
    assert set(golden["cases"]) == {case[0] for case in CASES}, f"stale fingerprints: run {fp.RECORD_COMMAND}"
    assert set(golden["stage_prints"]) == {case[0] for case in STAGE_PRINT_CASES}
    assert set(golden["failures"]) == {case[0] for case in [*FAILURES, TRAIN_FAILURE]}
    assert golden["article"]["name"] == article_oracle.SEED_NAME


class _ResidualScaledBottleneck(rm.Bottleneck):
    """A planted wrong number: our Bottleneck with its residual scaled by 1.001 (same modules, parameters
    and initial weights, so only the eval and train checks can see it)."""

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += 1.001 * residual
        return self.relu(out)


# Defined before the per-case tests so that it runs before their (module-scoped, GB-sized) models exist.
@pytest.mark.parametrize("case_id", ["resnet50-3d", "unet3d-resnet50"])
def test_fingerprint_catches_a_planted_wrong_residual(case_id, golden):
    # The one tolerance is tight enough to catch a wrong gradient: a residual off by 1e-3 fails the
    # train check (output, most gradients, running stats) while the structure still matches.
    (case,) = [c for c in CASES if c[0] == case_id]
    _, _, class_name, kwargs, input_shape = case
    recorded = golden["cases"][case_id]
    planted = fp.Run(build({**vars(rm), "Bottleneck": _ResidualScaledBottleneck}, class_name, kwargs), input_shape)
    assert not fp.compare("structure", recorded["structure"], fp.structure_fingerprint(planted),
                          structure=recorded["structure"])
    mismatches = fp.compare("train", recorded["train"], fp.train_fingerprint(planted), structure=recorded["structure"])
    assert mismatches, f"a residual scaled by 1.001 passed the train fingerprint of {case_id}"
    assert fp.compare("eval", recorded["eval"], fp.eval_fingerprint(planted), structure=recorded["structure"])
    assert any(m.startswith("train output:") for m in mismatches), mismatches
    assert sum(" grad " in m for m in mismatches) > len(recorded["train"]["grads"]) // 2, mismatches


def _where(golden) -> str:
    return (f"(recorded with torch {golden['torch']}, {golden['threads']} threads, {golden['cpu_capability']}; "
            f"running {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})")


@pytest.mark.parametrize("part", ["structure", "eval", "train", "work"])
def test_fingerprint_matches_the_articles(part, case, ours, recorded, golden, thorough):
    # structure: state_dict keys/shapes/dtypes in order, module names, seeded initial weights; eval: the
    # output (seeded input 1); train: output, gradients, running stats after a step (seeded input 2);
    # work: what the bench tables report (parameters, MACs by operator, modules never called).
    # The same comparison on every machine: exact, or within fp.RTOL (the passes run in float64).
    skip_deep_pass(case[0], part, thorough)
    assert golden["rtol"] == fp.RTOL and golden["dtype"] == str(fp.DTYPE).removeprefix("torch."), \
        f"the procedures changed since the fingerprints were recorded: run {fp.RECORD_COMMAND}"
    mismatches = fp.compare(part, recorded[part], fp.PARTS[part](ours), structure=recorded["structure"])
    assert not mismatches, (f"{mismatches}\n{_where(golden)}\nWhere the structure part fails on the initial "
                            f"weights too, this machine's RNG draws other float32 bits (another torch, or a CPU without "
                            f"AVX2), and the outputs and gradients follow them: see fingerprints' docstring.")


@pytest.mark.parametrize("case_id,class_name,section,kwargs", STAGE_PRINT_CASES, ids=[c[0] for c in STAGE_PRINT_CASES])
def test_fingerprint_stage_prints_are_the_articles_bytes(case_id, class_name, section, kwargs, golden):
    entry = golden["stage_prints"][case_id]
    assert entry["case"] == {"section": section, "class": class_name, "kwargs": kwargs}, f"run {fp.RECORD_COMMAND}"
    ours = build(vars(rm), class_name, kwargs)
    assert fp.stage_prints(ours, ours=True) == "".join(f"{line}\n" for line in entry["lines"])
    assert len(entry["lines"]) == 5
    assert fp.stage_prints(ours, ours=False) == ""  # the switch is off again after the block


@pytest.mark.parametrize("case_id,section,class_name,kwargs,input_shape", [*FAILURES, TRAIN_FAILURE],
                         ids=[c[0] for c in [*FAILURES, TRAIN_FAILURE]])
def test_fingerprint_failures_are_the_articles(case_id, section, class_name, kwargs, input_shape, golden):
    entry = golden["failures"][case_id]
    assert entry["case"] == {"section": section, "class": class_name, "kwargs": kwargs,
                             "input_shape": list(input_shape)}, f"run {fp.RECORD_COMMAND}"
    assert entry["error"] is not None, "the article's code ran this without failing"
    error = fp.failure(build(vars(rm), class_name, kwargs), input_shape, train=case_id == TRAIN_FAILURE[0])
    assert error is not None, f"ours ran it; the article raised {entry['error']}"
    assert error == entry["error"]


# --- live tests: our models side by side with the article's own code -------------------------------

@needs_article
def test_live_fingerprints_were_recorded_from_this_article(golden):
    assert golden["article"]["sha256"] == hashlib.sha256(article_oracle.seed_path().read_bytes()).hexdigest(), \
        f"the article changed since the fingerprints were recorded: run {fp.RECORD_COMMAND}"


@needs_article
def test_live_same_state_dict_keys_in_order_and_same_seeded_weights(ours, theirs):
    assert list(ours.initial_state) == list(theirs.initial_state)
    assert ours.built_dtypes == theirs.built_dtypes
    for key, ours_t in ours.initial_state.items():  # in fp.DTYPE, which holds the built float32 values exactly
        assert ours_t.shape == theirs.initial_state[key].shape, key
        assert torch.equal(ours_t, theirs.initial_state[key]), key
    assert ours.module_names == theirs.module_names


@needs_article
def test_live_same_outputs_in_eval_mode(case, ours, theirs, thorough):
    skip_deep_pass(case[0], "eval", thorough)
    assert torch.equal(ours.eval_output, theirs.eval_output)


@needs_article
def test_live_same_outputs_gradients_and_running_stats_in_train_mode(case, ours, theirs, thorough):
    skip_deep_pass(case[0], "train", thorough)
    (out_ours, grads_ours, buffers_ours), (out_theirs, grads_theirs, buffers_theirs) = ours.train_step, theirs.train_step
    assert torch.equal(out_ours, out_theirs)
    assert list(grads_ours) == list(grads_theirs)
    for name, g_ours in grads_ours.items():
        assert (g_ours is None) == (grads_theirs[name] is None), name
        if g_ours is not None:
            assert torch.equal(g_ours, grads_theirs[name]), name
    assert list(buffers_ours) == list(buffers_theirs)
    for name, b_ours in buffers_ours.items():
        assert torch.equal(b_ours, buffers_theirs[name]), name


@needs_article
def test_live_harness_counts_the_same_work_on_the_articles_model(ours, theirs):
    # What the bench tables report (parameters, used parameters, MACs by operator, modules never
    # called) is what the article's own code gives.
    for field in ("params_total", "params_used", "macs", "macs_by_operator", "uncalled_modules"):
        assert getattr(ours.work, field) == getattr(theirs.work, field), field
    # Not the names of the ops fvcore cannot count: for shortcut A the article builds its zeros with
    # the legacy torch.Tensor(...).zero_() (traced: aten::zero_), we with torch.zeros (traced: the
    # channel arithmetic, aten::rsub). Neither does multiply-adds; one per shortcut either way.
    assert sum(ours.work.unsupported_ops.values()) == sum(theirs.work.unsupported_ops.values())


@needs_article
@pytest.mark.parametrize("case_id,class_name,section,kwargs", STAGE_PRINT_CASES, ids=[c[0] for c in STAGE_PRINT_CASES])
def test_live_stage_prints_are_the_articles_bytes(case_id, class_name, section, kwargs):
    ours, theirs = build_pair(section, class_name, kwargs)
    article_out = fp.stage_prints(theirs, ours=False)
    assert fp.stage_prints(ours, ours=True) == article_out
    assert article_out.count("\n") == 5
    assert fp.stage_prints(ours, ours=False) == ""


@needs_article
@pytest.mark.parametrize("section,class_name,kwargs,input_shape", [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES])
def test_live_same_failures(section, class_name, kwargs, input_shape):
    ours, theirs = build_pair(section, class_name, kwargs)
    x = torch.randn(input_shape)
    with pytest.raises(Exception) as article_error:
        silently(theirs.eval(), x)
    with pytest.raises(type(article_error.value)) as our_error:
        ours.eval()(x)
    assert str(our_error.value) == str(article_error.value)


@needs_article
def test_live_train_mode_needs_more_than_one_value_per_channel_like_the_article():
    ours, theirs = build_pair(*TRAIN_FAILURE[1:4])
    x = torch.randn(TRAIN_FAILURE[4])  # x5 is 1x1x1 with batch 1
    with pytest.raises(ValueError, match="more than 1 value per channel") as article_error:
        silently(theirs.train(), x)
    with pytest.raises(ValueError) as our_error:
        ours.train()(x)
    assert str(our_error.value) == str(article_error.value)
