"""The Flex Templates under templates/ agree with the pipelines they launch."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from voxbeam import jobs
from voxbeam.flags import FLAGS, STREAM_SOURCES, Flag
from voxbeam.jobs import args as job_args
from voxbeam.jobs.runner import beam_options

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_BASE = "gcr.io/dataflow-templates-base/python311-template-launcher-base"
SECRETS = {"api_key"}  # options that must never be template parameters


@dataclass(frozen=True)
class Template:
    kind: str  # the job it launches
    image: str  # the template folder whose Dockerfile builds its image; also the pipeline main's name
    streaming: bool
    # The job's options that do not apply to this template, so are not its parameters. Every other option
    # but the key is one: a new option of the job fails the tests until it is put on one side or the other.
    not_parameters: frozenset[str]


TEMPLATES = {
    # Batch: none of the stream's options (the pipeline marks them "stream:" in its help).
    "transcribe_audio": Template(
        "transcribe",
        "transcribe_audio",
        streaming=False,
        not_parameters=frozenset(
            {"input_subscription", "input_topic", "window_seconds", "dedup_minutes", "input_pattern"}
        ),
    ),
    "synthesize_text": Template(
        "synthesize",
        "synthesize_text",
        streaming=False,
        not_parameters=frozenset({"input_subscription", "input_topic", "window_seconds", "dedup_minutes"}),
    ),
    # Streaming: a Pub/Sub source instead of input; skip_existing reads earlier batch runs' outputs, which a
    # stream does not (its own redeliveries are dropped by dedup_minutes); max_dead_letter_fraction decides
    # the exit status of a run that waits for its job to finish, and a streaming job does not finish.
    # Built from the batch templates' images: same pipeline main, own metadata.json.
    "transcribe_audio_streaming": Template(
        "transcribe",
        "transcribe_audio",
        streaming=True,
        not_parameters=frozenset({"input", "skip_existing", "max_dead_letter_fraction"}),
    ),
    "synthesize_text_streaming": Template(
        "synthesize",
        "synthesize_text",
        streaming=True,
        not_parameters=frozenset({"input", "skip_existing", "max_dead_letter_fraction"}),
    ),
}
STREAMING = sorted(t for t, spec in TEMPLATES.items() if spec.streaming)
IMAGES = sorted({spec.image for spec in TEMPLATES.values()})

# paramType values of Dataflow's template metadata (ParameterType) that these templates may use
PARAM_TYPES = {
    "TEXT",
    "NUMBER",
    "BOOLEAN",
    "ENUM",
    "GCS_READ_FILE",
    "GCS_READ_FOLDER",
    "GCS_WRITE_FOLDER",
    "PUBSUB_TOPIC",
    "PUBSUB_SUBSCRIPTION",
}
# TemplateMetadata's fields: a misspelt one would be ignored by Dataflow, not refused
SPEC_FIELDS = {
    "name",
    "description",
    "parameters",
    "streaming",
    "supportsAtLeastOnce",
    "supportsExactlyOnce",
    "defaultStreamingMode",
}

# Values each parameter's regexes must accept, and values they must reject.
GOOD: dict[str, list[str]] = {
    "input": ["gs://my-bucket/audio/*.wav", "gs://my-bucket/calls/**.mp3", "gs://my.bucket-1/list.txt"],
    "output": ["gs://my-bucket/out", "gs://my-bucket/out/2026/"],
    "language": ["en-US", "zh-CN", "de", "cmn-Hans-CN"],
    "timestamps": ["true", "false"],
    "skip_existing": ["true", "false"],
    "captions": ["srt", "vtt", "srt,vtt"],
    "prompt": ["Mr. John Dashwood of Norland Park.", "Inter-Asterisk Exchange (IAX)\nDigium", "你好", "x" * 500],
    "hotwords": ["Dashwood Norland", "IAX Digium Asterisk", "x" * 250],
    "task": ["transcribe", "translate"],
    "languages": ["en", "en,es,fr", "pt-BR,es", "cmn-Hans"],
    "stt_model": ["base", "tiny.en", "large-v3", "Systran/faster-whisper-small"],
    "redact": ["all", "CARD_NUMBER", "EMAIL,PHONE_NUMBER,NATIONAL_ID"],
    "phone_region": ["US", "GB", "de"],
    "profanity": ["mask", "remove", "tag"],
    "redact_on": ["client", "server"],
    "redact_keep_original": ["true", "false"],
    "diarize": ["true", "false"],
    "channels": ["auto", "split", "mix"],
    "min_speakers": ["1", "2"],
    "max_speakers": ["2", "10"],
    "redact_audio": ["tone", "silence"],
    "endpoint": ["wss://api.voxnexus.ai", "ws://10.0.0.2:8080", "wss://a.example.com,wss://b.example.com/v1"],
    "api_key_secret": ["projects/p-1/secrets/voxnexus-key", "projects/123/secrets/key/versions/3"],
    "auth": ["header", "query"],
    "sessions_per_worker": ["1", "8", "64"],
    "max_attempts": ["1", "5"],
    "retry_budget": ["600", "30", "0", "7.5"],
    "max_dead_letter_fraction": ["0", "0.05", "0.5", "1", "1.0"],
    "ca_bundle": ["/etc/ssl/certs/voxnexus-ca.pem"],
    "voice_id": ["vl-jenny", "vl-xiaoxiao"],
    "audio_format": ["wav", "pcm", "mp3", "flac", "opus", "ogg"],
    "sample_rate": ["8000", "16000", "22050", "44100", "48000"],
    "speed": ["1.0", "0.8", "2"],
    "pitch": ["0", "-2.5", "+1"],
    "volume": ["1.0", "0.5", "2"],
    "input_subscription": [
        "projects/my-project/subscriptions/calls-voxbeam",
        "projects/example.com:my-project/subscriptions/a_b.c~d+e%25f",
        "projects/my-project-123/subscriptions/Sub1",
    ],
    "input_topic": ["projects/my-project/topics/voxbeam-audio", "projects/example.com:my-project/topics/T.1"],
    "window_seconds": ["60", "1", "300", "7.5"],
    "dedup_minutes": ["60", "0", "1440", "2.5"],
    "input_pattern": ["incoming/**.wav", "*.wav", "calls/*/*.mp3", "calls/2026-11-25T10:00/**", "a"],
}
BAD: dict[str, list[str]] = {
    "input": ["/data/audio/*.wav", "s3://bucket/a.wav", "gs://", "gs://My_Bucket/a.wav", "gs://b/a.wav\nx"],
    "output": ["out/", "gs://", "https://storage.googleapis.com/b/out"],
    "language": ["english", "en_US", "", "en-"],
    "timestamps": ["yes", "True", "1", ""],
    "skip_existing": ["yes", "TRUE", "0"],
    "captions": ["txt", "srt;vtt", "srt,", ""],
    "prompt": ["", "x" * 501, "a\x00b", "bell\x07"],
    "hotwords": ["", "x" * 251, "a\x1bb"],
    "task": ["Translate", "summarize", ""],
    "languages": ["", "en, es", "en,", "english", "en;es"],
    "stt_model": ["", "base tiny.en", "-x", "base\n", "x" * 201],
    "redact": ["", "cards", "EMAIL,", "EMAIL PHONE_NUMBER", "ALL,EMAIL"],
    "phone_region": ["USA", "1", "", "G B"],
    "profanity": ["bleep", "MASK", ""],
    "redact_on": ["both", "SERVER", ""],
    "redact_keep_original": ["yes", "1", ""],
    "diarize": ["yes", "1", ""],
    "channels": ["stereo", "AUTO", ""],
    "min_speakers": ["0", "-1", "two", "1.5"],
    "max_speakers": ["0", "-1", "two", "1.5"],
    "redact_audio": ["bleep", "Tone", ""],
    "endpoint": ["https://api.voxnexus.ai", "api.voxnexus.ai", "wss://a, wss://b", "wss://a,"],
    "api_key_secret": ["voxnexus-key", "projects/p/secrets/", "projects/p/keys/k"],
    "auth": ["bearer", "Header", ""],
    "sessions_per_worker": ["0", "-1", "eight", "1.5"],
    "max_attempts": ["0", "", "three"],
    "retry_budget": ["-1", "", "ten", "1e3", ".5"],
    "max_dead_letter_fraction": ["-0.1", "1.5", "5%", "", "two"],
    "ca_bundle": ["ca.pem", "gs://bucket/ca.pem"],
    "voice_id": ["jenny smith", "-x", ""],
    "audio_format": ["wave", "aac", ""],
    "sample_rate": ["7999", "48001", "16k", "96000", ""],
    "speed": ["-1", "fast", ""],
    "pitch": ["high", "--1", ""],
    "volume": ["-0.5", "loud", ""],
    "input_subscription": [
        "calls-voxbeam",
        "projects/my-project/topics/calls",
        "projects/my-project/subscriptions/",
        "projects/my-project/subscriptions/1calls",
        "projects/my-project/subscriptions/ab",
        "projects/my-project/subscriptions/a b",
        "projects/my-project/subscriptions/calls/x",
        "projects/My-Project/subscriptions/calls",
        "projects/p/subscriptions/calls",  # too short for a project id
    ],
    "input_topic": [
        "voxbeam-audio",
        "projects/my-project/subscriptions/s-1",
        "projects/my-project/topics/",
        "projects/p/topics/calls",
        "//pubsub.googleapis.com/projects/my-project/topics/calls",
    ],
    "window_seconds": ["0", "0.5", "-60", "", "1m", "60s"],
    "dedup_minutes": ["-1", "", "1h", ".5"],
    "input_pattern": ["gs://my-bucket/calls/*.wav", "/calls/*.wav", "", " calls/*.wav", "calls/*.wav\nx"],
}


def pipeline_options(kind: str) -> dict[str, Flag]:
    """The pipeline's own options (name without dashes -> Flag), as its parser defines them."""
    return {flag.name: flag for flag in FLAGS[kind]}


def parse(flag: Flag, value: str) -> Any:
    """``value`` as the pipeline's parser reads it."""
    return flag.type(value)


def required_flags(kind: str, given: Sequence[str] = ()) -> set[str]:
    """Flags the job's command line is refused without, besides ``given``: add each one it asks for until it
    takes the line (parsing only: nothing is read or run)."""
    argv = list(given)
    required: set[str] = set()
    for _ in range(20):
        try:
            job_args.parse(kind, argv)
        except jobs.UsageError as exc:
            if not str(exc).startswith(f"{exc.flag}: is required") or exc.flag in required:
                raise AssertionError(f"refused for another reason than a missing flag: {exc}") from None
            required.add(exc.flag)
            argv += [exc.flag, "gs://my-bucket/placeholder"]
        else:
            return required
    raise AssertionError("the job kept asking for more flags")


def given_source(template: str) -> list[str]:
    """What a template always passes for the input it reads, when it is not a parameter one can leave out."""
    return ["--input_subscription", "projects/my-project/subscriptions/s-1"] if TEMPLATES[template].streaming else []


def metadata(template: str) -> dict[str, Any]:
    return json.loads((ROOT / "templates" / template / "metadata.json").read_text(encoding="utf-8"))


def params(template: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in metadata(template)["parameters"]}


def dockerfile(template: str) -> list[list[str]]:
    """Instructions of the template's Dockerfile as token lists (comments dropped, continuations joined)."""
    text = (ROOT / "templates" / template / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], value)


def image_layout(template: str) -> tuple[str, dict[str, str], dict[str, Path]]:
    """The final FROM image, the ENV settings, and where each copied container path comes from in the repo."""
    variables: dict[str, str] = {}
    env: dict[str, str] = {}
    copies: dict[str, Path] = {}
    base = ""
    workdir = "/"
    for tokens in dockerfile(template):
        op, args = tokens[0].upper(), tokens[1:]
        if op == "ARG" and "=" in args[0]:
            name, _, default = args[0].partition("=")
            variables.setdefault(name, default)
        elif op == "FROM":
            base = expand(args[0], variables)
            env, copies, workdir = {}, {}, "/"  # a new stage starts from scratch
        elif op == "WORKDIR":
            workdir = expand(args[0], variables)
        elif op == "ENV":
            for assignment in args:
                name, _, value = assignment.partition("=")
                env[name] = expand(value, {**variables, **env})
        elif op == "COPY" and not any(a.startswith("--from") for a in args):
            *sources, dest = (a for a in args if not a.startswith("--"))
            dest = expand(dest, variables)
            dest = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
            for source in sources:
                into_dir = dest.endswith("/") or len(sources) > 1
                target = f"{dest.rstrip('/')}/{Path(source).name}" if into_dir else dest.rstrip("/")
                copies[target] = ROOT / source
    return base, env, copies


def repo_path(container_path: str, copies: dict[str, Path]) -> Path | None:
    """The repository file that ends up at ``container_path`` in the image, if a COPY puts one there."""
    for target, source in sorted(copies.items(), key=lambda kv: -len(kv[0])):
        if container_path == target:
            return source
        if container_path.startswith(target + "/"):
            return source / container_path[len(target) + 1 :]
    return None


@pytest.fixture(params=sorted(TEMPLATES))
def template(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=STREAMING)
def streaming_template(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=IMAGES)
def image(request: pytest.FixtureRequest) -> str:
    """A template folder with a Dockerfile: the image of its own template and of the streaming one."""
    return str(request.param)


def test_the_template_folders_are_the_ones_listed_here() -> None:
    folders = {p.parent.name for p in (ROOT / "templates").glob("*/metadata.json")}
    assert folders == set(TEMPLATES)
    for name, spec in TEMPLATES.items():
        assert not TEMPLATES[spec.image].streaming and TEMPLATES[spec.image].kind == spec.kind, name


def test_metadata_is_a_flex_template_spec(template: str) -> None:
    spec = metadata(template)
    assert set(spec) <= SPEC_FIELDS, f"not TemplateMetadata fields: {sorted(set(spec) - SPEC_FIELDS)}"
    assert isinstance(spec["name"], str) and spec["name"]
    assert isinstance(spec["description"], str) and spec["description"]
    names = [p["name"] for p in spec["parameters"]]
    assert len(names) == len(set(names)), "duplicate parameter names"
    for p in spec["parameters"]:
        assert {"name", "label", "helpText", "isOptional"} <= p.keys(), p
        assert isinstance(p["isOptional"], bool), p["name"]
        assert p["label"].strip() and p["helpText"].strip(), p["name"]
        assert p.get("paramType", "TEXT") in PARAM_TYPES, p["name"]


def test_streaming_templates_say_so_and_batch_ones_do_not(template: str) -> None:
    spec = metadata(template)
    if not TEMPLATES[template].streaming:
        assert not {"streaming", "supportsAtLeastOnce", "supportsExactlyOnce", "defaultStreamingMode"} & set(spec)
        return
    assert spec["streaming"] is True
    exactly, at_least = spec["supportsExactlyOnce"], spec["supportsAtLeastOnce"]
    assert isinstance(exactly, bool) and isinstance(at_least, bool) and exactly, "exactly-once is Dataflow's default"
    if "defaultStreamingMode" in spec:  # valid only when both modes are supported
        assert exactly and at_least and spec["defaultStreamingMode"] in {"EXACTLY_ONCE", "AT_LEAST_ONCE"}


def test_every_parameter_is_an_option_of_the_pipeline(template: str) -> None:
    options = pipeline_options(TEMPLATES[template].kind)
    unknown = set(params(template)) - set(options)
    assert not unknown, f"{template}/metadata.json names options the pipeline does not have: {sorted(unknown)}"


def test_every_option_that_applies_but_the_key_is_a_parameter(template: str) -> None:
    options = set(pipeline_options(TEMPLATES[template].kind))
    assert SECRETS <= options  # the pipeline does take the key directly ...
    left_out = TEMPLATES[template].not_parameters
    assert left_out <= options, f"no longer options of the pipeline: {sorted(left_out - options)}"
    missing = options - SECRETS - left_out - set(params(template))
    assert not missing, f"{template}/metadata.json lacks parameters for: {sorted(missing)}"
    wrong = left_out & set(params(template))
    assert not wrong, f"{template}/metadata.json has parameters that do not apply to it: {sorted(wrong)}"


def test_batch_and_streaming_templates_split_the_options_as_the_pipeline_does(template: str) -> None:
    """Batch templates leave out exactly the options the pipeline's help marks as the stream's; streaming
    templates take every one of those, and read a Pub/Sub source instead of ``input``."""
    kind = TEMPLATES[template].kind
    stream_only = {flag.name for flag in FLAGS[kind] if flag.help.startswith("stream:")}
    assert set(STREAM_SOURCES) <= stream_only
    if TEMPLATES[template].streaming:
        assert stream_only <= set(params(template))
        assert "input" in TEMPLATES[template].not_parameters
    else:
        assert TEMPLATES[template].not_parameters == stream_only


def test_the_api_key_is_not_a_parameter_and_the_secret_is(template: str) -> None:
    spec = metadata(template)
    assert not SECRETS & set(params(template))  # ... but never as a template parameter
    assert "api_key_secret" in params(template)
    assert "api_key_secret" in spec["description"] and "Secret Manager" in spec["description"]


def test_required_options_are_required_parameters(template: str) -> None:
    required = {flag.lstrip("-") for flag in required_flags(TEMPLATES[template].kind, given_source(template))}
    assert required == ({"output"} if TEMPLATES[template].streaming else {"input", "output"})
    p = params(template)
    for name in required:
        assert name in p and p[name]["isOptional"] is False, f"{name} is required by the pipeline"
    mandatory = {name for name, q in p.items() if not q["isOptional"]}
    assert mandatory == required, "a parameter is mandatory in the template but optional in the pipeline"


def test_a_streaming_template_reads_exactly_one_source(streaming_template: str) -> None:
    """The form cannot say "one of these two", so both are optional and the launcher refuses none or both."""
    kind, p = TEMPLATES[streaming_template].kind, params(streaming_template)
    for source in STREAM_SOURCES:
        assert p[source]["isOptional"] is True
        assert "exactly one of input_subscription and input_topic" in p[source]["helpText"], source
    output = ["--output", "gs://my-bucket/out"]
    subscription = ["--input_subscription", "projects/my-project/subscriptions/s-1"]
    topic = ["--input_topic", "projects/my-project/topics/t-1"]
    for argv in (subscription, topic):
        assert job_args.parse(kind, [*argv, *output]).config.stream
    with pytest.raises(jobs.UsageError, match="--input_subscription"):
        job_args.parse(kind, output)
    with pytest.raises(jobs.UsageError) as both:
        job_args.parse(kind, [*subscription, *topic, *output])
    assert both.value.flag == "--input_topic"


def test_defaults_and_choices_match_the_pipeline(template: str) -> None:
    options = pipeline_options(TEMPLATES[template].kind)
    for name, p in params(template).items():
        flag = options[name]
        if "defaultValue" in p:
            assert flag.default is not None, f"{name}: the pipeline has no default"
            assert parse(flag, p["defaultValue"]) == flag.default, name
        if flag.choices:
            for choice in flag.choices:
                assert all(re.fullmatch(rx, choice) for rx in p.get("regexes", [])), (name, choice)
            if p.get("paramType") == "ENUM":
                assert [o["value"] for o in p["enumOptions"]] == list(flag.choices), name
        if p.get("paramType") == "BOOLEAN":
            assert set(flag.choices or ()) == {"true", "false"}, name


def test_regexes_compile_accept_good_and_reject_bad_values(template: str) -> None:
    options = pipeline_options(TEMPLATES[template].kind)
    for name, p in params(template).items():
        regexes = p.get("regexes")
        assert regexes, f"{name} has no regexes: give it one, and examples in GOOD and BAD"
        compiled = [re.compile(rx) for rx in regexes]
        for rx in regexes:  # anchored, so full-match and search engines agree
            assert rx.startswith("^") and rx.endswith("$"), (name, rx)
        assert GOOD.get(name) and BAD.get(name), f"add examples for {name} to GOOD and BAD"
        for value in GOOD[name]:
            assert all(c.fullmatch(value) for c in compiled), f"{name} rejects {value!r}"
            flag = options[name]
            parse(flag, value)  # what the template accepts, the pipeline parses
            if flag.choices:
                assert value in flag.choices, (name, value)
        for value in BAD[name]:
            assert not all(c.fullmatch(value) for c in compiled), f"{name} accepts {value!r}"


def test_pubsub_names_the_templates_take_are_names_beam_takes() -> None:
    from apache_beam.io.gcp.pubsub import parse_subscription, parse_topic

    for name in GOOD["input_subscription"]:
        parse_subscription(name)
    for name in GOOD["input_topic"]:
        parse_topic(name)


@pytest.mark.parametrize("script", [f"{name}.py" for name in IMAGES])
def test_pipeline_main_help(script: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / script), "--help"],
        cwd=tmp_path,  # not the checkout: the script must find voxbeam on its own
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--input" in proc.stdout and "--output" in proc.stdout
    launched = [t for t, spec in TEMPLATES.items() if spec.image == script.removesuffix(".py")]
    assert len(launched) == 2  # by the batch template and the streaming one
    for template in launched:
        for name in params(template):
            assert f"--{name}" in proc.stdout, (template, name)


def test_a_streaming_template_is_its_batch_template_image_with_its_own_metadata(streaming_template: str) -> None:
    folder = ROOT / "templates" / streaming_template
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json"], "the image is the batch template's"
    image = TEMPLATES[streaming_template].image
    assert (ROOT / "templates" / image / "Dockerfile").is_file()


def test_dockerfile_is_a_python311_flex_template_launcher(image: str) -> None:
    base, env, copies = image_layout(image)
    assert base.split(":")[0] == LAUNCHER_BASE, base

    py_file = repo_path(env["FLEX_TEMPLATE_PYTHON_PY_FILE"], copies)
    assert py_file == ROOT / "pipelines" / f"{image}.py", env["FLEX_TEMPLATE_PYTHON_PY_FILE"]
    assert py_file.is_file()

    requirements = repo_path(env["FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE"], copies)
    assert requirements == ROOT / "templates" / image / "requirements.txt"
    assert requirements.is_file()

    # voxbeam itself is in the image: the package, its setup.py and the README that setup.py reads
    for needed in ("setup.py", "README.md", "voxbeam"):
        assert ROOT / needed in copies.values(), f"the image does not copy {needed}"
    text = (ROOT / "templates" / image / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"pip install[^\n]*\"?\.\[gcp\]", text), "voxbeam is not installed with the gcp extra"


def test_image_can_run_the_workers(image: str) -> None:
    """Same Beam version for launcher and worker boot, and the boot program as the entrypoint."""
    text = (ROOT / "templates" / image / "Dockerfile").read_text(encoding="utf-8")
    beam_arg = re.search(r"^ARG BEAM_VERSION=(\S+)$", text, re.M)
    assert beam_arg, "no BEAM_VERSION"
    assert "apache/beam_python3.11_sdk:${BEAM_VERSION}" in text
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', text, re.M)

    lines = requirement_lines(ROOT / "templates" / image / "requirements.txt")
    pins = [line for line in lines if line.startswith("apache-beam")]
    assert pins == [f"apache-beam[gcp]=={beam_arg.group(1)}"], lines
    tested = re.search(r"^apache-beam==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert tested and beam_arg.group(1) == tested.group(1), "the template pins another Beam than constraints.txt"
    assert re.search(r"pip install[^\n]* -c constraints\.txt -r requirements\.txt", text), "installs ignore constraints"


def requirement_lines(path: Path) -> Sequence[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()[:1] not in ("", "#")]


def test_docker_context_keeps_what_the_image_copies(image: str) -> None:
    ignore = ROOT / "templates" / image / "Dockerfile.dockerignore"
    kept = {line.strip().lstrip("!").rstrip("/") for line in ignore.read_text().splitlines() if line.startswith("!")}
    _, _, copies = image_layout(image)
    for source in copies.values():
        assert str(source.relative_to(ROOT)) in kept, f"{source} is copied but left out of the build context"


def test_a_launch_that_only_submits_the_job_does_not_claim_nothing_was_new(
    server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a Flex Template launcher the job runs later: nothing is written yet, yet every input is new."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(ROOT / "examples" / "audio" / "jfk.wav", inputs / f"{name}.wav")
    out = str(tmp_path / "out")
    service = ["--endpoint", server.url, "--api_key", server.api_key]
    submit = ["--runner", "tests.jobs.custom_runner.SubmitOnlyRunner", "--setup_file", str(ROOT / "setup.py")]
    assert jobs.main("transcribe", [str(inputs), "--output", out, *service, *submit]) == 0
    said = capsys.readouterr().out
    assert "nothing new" not in said and "0 rows written" in said, said

    # Once a run has written them, a launch that finds every input done says so.
    assert jobs.main("transcribe", [str(inputs), "--output", out, *service]) == 0
    capsys.readouterr()
    again = [str(inputs), "--output", out, "--skip_existing", "true", *service, *submit]
    assert jobs.main("transcribe", again) == 0
    assert "nothing new to transcribe: all 3 inputs" in capsys.readouterr().out


README_VALUES = {
    "PROJECT": "my-project",
    "REGION": "us-central1",
    "BUCKET": "my-bucket",
    "REPOSITORY": "voxbeam",
    "TAG": "20261125",
    "WORKER_SA": "voxbeam-worker@my-project.iam.gserviceaccount.com",
    "SCHEDULER_SA": "voxbeam-scheduler@my-project.iam.gserviceaccount.com",
}


def readme_commands(program: str) -> list[list[str]]:
    """Shell commands in templates/README.md starting with ``program``, placeholders filled in, tokenized."""
    text = (ROOT / "templates" / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\b(" + "|".join(README_VALUES) + r")\b", lambda m: README_VALUES[m.group(1)], text)
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines(keepends=True):
            pending += line
            try:  # a command ends where its quotes are balanced
                tokens = shlex.split(pending, comments=True)
            except ValueError:
                continue
            if pending.startswith(program):
                commands.append(tokens)
            pending = ""
    return commands


def gcloud_flags(cmd: Sequence[str]) -> dict[str, str]:
    """A command's ``--flag=value`` tokens (the last of each)."""
    return {name: value for name, _, value in (t.partition("=") for t in cmd if t.startswith("--") and "=" in t)}


def launch_parameters(cmd: Sequence[str]) -> dict[str, str]:
    """What a ``gcloud dataflow flex-template run`` passes with ``--parameters``, as gcloud splits it."""
    given: dict[str, str] = {}
    for token in cmd:
        if not token.startswith("--parameters="):
            continue
        value = token.removeprefix("--parameters=")
        delimiter = ","
        if value.startswith("^"):  # gcloud's alternate delimiter syntax: ^~^a=1~b=2
            delimiter, value = value[1:].split("^", 1)
        for pair in value.split(delimiter):
            name, _, val = pair.partition("=")
            given[name] = val
    return given


def spec_template(location: str) -> str:
    """The template whose spec file the README builds at ``location``."""
    found = re.fullmatch(r"gs://my-bucket/templates/(\w+)\.json", location)
    assert found and found.group(1) in TEMPLATES, location
    return found.group(1)


def readme_builds() -> dict[str, list[str]]:
    """Each template's ``gcloud dataflow flex-template build`` command in the README."""
    builds: dict[str, list[str]] = {}
    for cmd in readme_commands("gcloud dataflow flex-template build"):
        template = spec_template(cmd[4])
        assert template not in builds, f"{template} is built twice"
        builds[template] = cmd
    return builds


def check_parameters(template: str, given: dict[str, str]) -> None:
    """A launch's parameters: the template's own image for the workers, every mandatory parameter, values its
    regexes take, and all of it a command line the job takes (as the launcher passes it)."""
    p = params(template)
    given = dict(given)
    image = given.pop("sdk_container_image", "")
    assert image == gcloud_flags(readme_builds()[template])["--image"], "workers need the template's image"
    assert set(given) <= set(p), sorted(set(given) - set(p))
    for name in (n for n, q in p.items() if not q["isOptional"]):
        assert name in given, f"{name} is required"
    for name, value in given.items():
        for rx in p[name].get("regexes", []):
            assert re.fullmatch(rx, value), f"{template}: {name}={value!r} fails {rx}"
    job_args.parse(TEMPLATES[template].kind, [f"--{name}={value}" for name, value in given.items()])


def test_readme_builds_each_template_from_its_image_with_its_own_metadata() -> None:
    built = {}  # template folder with the Dockerfile -> the image the README builds from it
    for cmd in readme_commands("docker build"):
        built[Path(cmd[cmd.index("-f") + 1]).parent.name] = cmd[cmd.index("-t") + 1]
    assert set(built) == set(IMAGES)
    builds = readme_builds()
    assert set(builds) == set(TEMPLATES)
    for template, cmd in builds.items():
        flags = gcloud_flags(cmd)
        assert flags["--metadata-file"] == f"templates/{template}/metadata.json", template
        assert flags["--sdk-language"] == "PYTHON", template
        assert flags["--image"] == built[TEMPLATES[template].image], template


def test_readme_run_commands_pass_valid_parameters() -> None:
    runs = readme_commands("gcloud dataflow flex-template run")
    launched = set()
    for cmd in runs:
        template = spec_template(gcloud_flags(cmd)["--template-file-gcs-location"])
        launched.add(template)
        check_parameters(template, launch_parameters(cmd))
        if TEMPLATES[template].streaming:
            assert "--enable-streaming-engine" in cmd, cmd[4]
    assert launched == set(TEMPLATES)


def test_readme_drains_and_updates_streaming_jobs_by_name() -> None:
    runs = readme_commands("gcloud dataflow flex-template run")
    started = {cmd[4] for cmd in runs if "--update" not in cmd}
    updates = [cmd for cmd in runs if "--update" in cmd]
    assert updates, "no update of a streaming job"
    for cmd in updates:  # an update replaces the running job of the same name
        assert cmd[4] in started, cmd[4]
        assert TEMPLATES[spec_template(gcloud_flags(cmd)["--template-file-gcs-location"])].streaming
    drains = readme_commands("gcloud dataflow jobs drain")
    assert drains and all(gcloud_flags(cmd).get("--region") == "us-central1" for cmd in drains)


def test_readme_scheduler_job_launches_the_transcription_template_incrementally() -> None:
    (cmd,) = readme_commands("gcloud scheduler jobs create http")
    flags = dict(token.split("=", 1) for token in cmd if token.startswith("--") and "=" in token)
    assert re.fullmatch(
        r"https://dataflow\.googleapis\.com/v1b3/projects/my-project/locations/us-central1/flexTemplates:launch",
        flags["--uri"],
    )
    assert flags["--http-method"] == "POST" and "--oauth-service-account-email" in flags
    launch = json.loads(flags["--message-body"])["launchParameter"]
    assert launch["containerSpecGcsPath"] == "gs://my-bucket/templates/transcribe_audio.json"
    given = launch["parameters"]
    assert given["skip_existing"] == "true" and given["input"].startswith("gs://")
    check_parameters("transcribe_audio", given)


@pytest.mark.parametrize("kind", ["transcribe", "synthesize"])
def test_the_flags_a_launcher_adds_are_accepted(kind: str, tmp_path: Path) -> None:
    """The launcher runs the main with Dataflow's own flags (as logged in python-docs-samples#4891) after ours."""
    launcher_flags = [
        "--requirements_file=/template/requirements.txt",
        "--runner=DataflowRunner",
        "--job_name=voxbeam-20261125",
        "--temp_location=gs://my-bucket/temp",
        "--service_account_email=voxbeam-worker@my-project.iam.gserviceaccount.com",
        "--machine_type=n1-standard-1",
        "--project=my-project",
        "--template_location=gs://my-bucket/staging/template_launches/2026-11-25_02_00_00-1/job_object",
        "--staging_location=gs://my-bucket/staging",
        "--region=us-central1",
        "--sdk_container_image=us-central1-docker.pkg.dev/my-project/voxbeam/voxbeam-transcribe:20261125",
        "--max_num_workers=10",
        "--experiments=upload_graph",
    ]
    missing = str(tmp_path / "missing")
    with pytest.raises(jobs.UsageError) as raised:
        jobs.run(kind, ["--input", missing, "--output", str(tmp_path / "out"), *launcher_flags])
    assert raised.value.flag == "--input"  # got past flag checking to reading the input


@pytest.mark.parametrize("kind", ["transcribe", "synthesize"])
def test_the_flags_a_streaming_launch_adds_are_accepted(kind: str) -> None:
    """Streaming Engine, at-least-once mode and an update come as Beam options after ours. Parsed only: a
    stream that got further would start reading."""
    line = [
        "--input_subscription=projects/my-project/subscriptions/s-1",
        "--output=gs://my-bucket/out",
        "--requirements_file=/template/requirements.txt",
        "--runner=DataflowRunner",
        "--job_name=voxbeam-transcribe-stream",
        "--project=my-project",
        "--region=us-central1",
        "--temp_location=gs://my-bucket/temp",
        "--sdk_container_image=us-central1-docker.pkg.dev/my-project/voxbeam/voxbeam-transcribe:20261125",
        "--streaming",
        "--enable_streaming_engine",
        "--experiments=enable_streaming_engine",
        "--experiments=streaming_mode_at_least_once",
        "--dataflow_service_options=streaming_mode_at_least_once",
        "--update",
        '--transform_name_mapping={"Transcribe":"Transcribe"}',
    ]
    parsed = job_args.parse(kind, line)
    assert parsed.config.stream
    beam_options(kind, parsed.beam_args)  # Beam (with the Dataflow runner's options) knows every one
