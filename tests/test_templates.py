"""The Flex Templates under templates/ agree with the pipelines they launch."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from voxbeam import jobs
from voxbeam.jobs.args import FLAGS, Flag

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_BASE = "gcr.io/dataflow-templates-base/python311-template-launcher-base"
SECRETS = {"api_key"}  # options that must never be template parameters

# template folder == pipeline file name under pipelines/
TEMPLATES = {"transcribe_audio": "transcribe", "synthesize_text": "synthesize"}

# Values each parameter's regexes must accept, and values they must reject.
GOOD: dict[str, list[str]] = {
    "input": ["gs://my-bucket/audio/*.wav", "gs://my-bucket/calls/**.mp3", "gs://my.bucket-1/list.txt"],
    "output": ["gs://my-bucket/out", "gs://my-bucket/out/2026/"],
    "language": ["en-US", "zh-CN", "de", "cmn-Hans-CN"],
    "timestamps": ["true", "false"],
    "skip_existing": ["true", "false"],
    "captions": ["srt", "vtt", "srt,vtt"],
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
}
BAD: dict[str, list[str]] = {
    "input": ["/data/audio/*.wav", "s3://bucket/a.wav", "gs://", "gs://My_Bucket/a.wav", "gs://b/a.wav\nx"],
    "output": ["out/", "gs://", "https://storage.googleapis.com/b/out"],
    "language": ["english", "en_US", "", "en-"],
    "timestamps": ["yes", "True", "1", ""],
    "skip_existing": ["yes", "TRUE", "0"],
    "captions": ["txt", "srt;vtt", "srt,", ""],
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
}


def pipeline_options(kind: str) -> dict[str, Flag]:
    """The pipeline's own options (name without dashes -> Flag), as its parser defines them."""
    return {flag.name: flag for flag in FLAGS[kind]}


def parse(flag: Flag, value: str) -> Any:
    """``value`` as the pipeline's parser reads it."""
    return flag.type(value)


def required_flags(kind: str, placeholder: str) -> set[str]:
    """Flags the job refuses to run without: add each one it asks for until it complains about something else."""
    argv: list[str] = []
    required: set[str] = set()
    for _ in range(20):
        try:
            jobs.run(kind, argv)
        except jobs.UsageError as exc:
            if not str(exc).endswith("is required") or exc.flag in required:
                return required
            required.add(exc.flag)
            argv += [exc.flag, placeholder]
        else:  # pragma: no cover - a placeholder input never runs
            return required
    raise AssertionError("the job kept asking for more flags")


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


def test_metadata_is_a_flex_template_spec(template: str) -> None:
    spec = metadata(template)
    assert isinstance(spec["name"], str) and spec["name"]
    assert isinstance(spec["description"], str) and spec["description"]
    names = [p["name"] for p in spec["parameters"]]
    assert len(names) == len(set(names)), "duplicate parameter names"
    for p in spec["parameters"]:
        assert {"name", "label", "helpText", "isOptional"} <= p.keys(), p
        assert isinstance(p["isOptional"], bool), p["name"]
        assert p["label"].strip() and p["helpText"].strip(), p["name"]


def test_every_parameter_is_an_option_of_the_pipeline(template: str) -> None:
    options = pipeline_options(TEMPLATES[template])
    unknown = set(params(template)) - set(options)
    assert not unknown, f"{template}/metadata.json names options the pipeline does not have: {sorted(unknown)}"


def test_every_option_but_the_key_is_a_parameter(template: str) -> None:
    options = set(pipeline_options(TEMPLATES[template]))
    assert SECRETS <= options  # the pipeline does take the key directly ...
    missing = options - SECRETS - set(params(template))
    assert not missing, f"{template}/metadata.json lacks parameters for: {sorted(missing)}"


def test_the_api_key_is_not_a_parameter_and_the_secret_is(template: str) -> None:
    spec = metadata(template)
    assert not SECRETS & set(params(template))  # ... but never as a template parameter
    assert "api_key_secret" in params(template)
    assert "api_key_secret" in spec["description"] and "Secret Manager" in spec["description"]


def test_required_options_are_required_parameters(template: str, tmp_path: Path) -> None:
    required = {flag.lstrip("-") for flag in required_flags(TEMPLATES[template], str(tmp_path / "missing"))}
    assert {"input", "output"} <= required
    p = params(template)
    for name in required:
        assert name in p and p[name]["isOptional"] is False, f"{name} is required by the pipeline"
    mandatory = {name for name, q in p.items() if not q["isOptional"]}
    assert mandatory == required, "a parameter is mandatory in the template but optional in the pipeline"


def test_defaults_and_choices_match_the_pipeline(template: str) -> None:
    options = pipeline_options(TEMPLATES[template])
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
    options = pipeline_options(TEMPLATES[template])
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


@pytest.mark.parametrize("script", ["transcribe_audio.py", "synthesize_text.py"])
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
    for name in params(script.removesuffix(".py")):
        assert f"--{name}" in proc.stdout, name


def test_dockerfile_is_a_python311_flex_template_launcher(template: str) -> None:
    base, env, copies = image_layout(template)
    assert base.split(":")[0] == LAUNCHER_BASE, base

    py_file = repo_path(env["FLEX_TEMPLATE_PYTHON_PY_FILE"], copies)
    assert py_file == ROOT / "pipelines" / f"{template}.py", env["FLEX_TEMPLATE_PYTHON_PY_FILE"]
    assert py_file.is_file()

    requirements = repo_path(env["FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE"], copies)
    assert requirements == ROOT / "templates" / template / "requirements.txt"
    assert requirements.is_file()

    # voxbeam itself is in the image: the package, its setup.py and the README that setup.py reads
    for needed in ("setup.py", "README.md", "voxbeam"):
        assert ROOT / needed in copies.values(), f"the image does not copy {needed}"
    text = (ROOT / "templates" / template / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"pip install[^\n]*\"?\.\[gcp\]", text), "voxbeam is not installed with the gcp extra"


def test_image_can_run_the_workers(template: str) -> None:
    """Same Beam version for launcher and worker boot, and the boot program as the entrypoint."""
    text = (ROOT / "templates" / template / "Dockerfile").read_text(encoding="utf-8")
    beam_arg = re.search(r"^ARG BEAM_VERSION=(\S+)$", text, re.M)
    assert beam_arg, "no BEAM_VERSION"
    assert "apache/beam_python3.11_sdk:${BEAM_VERSION}" in text
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', text, re.M)

    lines = requirement_lines(ROOT / "templates" / template / "requirements.txt")
    pins = [line for line in lines if line.startswith("apache-beam")]
    assert pins == [f"apache-beam[gcp]=={beam_arg.group(1)}"], lines
    tested = re.search(r"^apache-beam==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert tested and beam_arg.group(1) == tested.group(1), "the template pins another Beam than constraints.txt"
    assert re.search(r"pip install[^\n]* -c constraints\.txt -r requirements\.txt", text), "installs ignore constraints"


def requirement_lines(path: Path) -> Sequence[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()[:1] not in ("", "#")]


def test_docker_context_keeps_what_the_image_copies(template: str) -> None:
    ignore = ROOT / "templates" / template / "Dockerfile.dockerignore"
    kept = {line.strip().lstrip("!").rstrip("/") for line in ignore.read_text().splitlines() if line.startswith("!")}
    _, _, copies = image_layout(template)
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


def check_parameters(template: str, given: dict[str, str]) -> None:
    p = params(template)
    assert set(given) - {"sdk_container_image"} <= set(p), sorted(set(given) - set(p))
    assert given.get("sdk_container_image", "").endswith(":20261125"), "workers need the template's image"
    for name in (n for n, q in p.items() if not q["isOptional"]):
        assert name in given, f"{name} is required"
    for name, value in given.items():
        for rx in p.get(name, {}).get("regexes", []):
            assert re.fullmatch(rx, value), f"{template}: {name}={value!r} fails {rx}"


def test_readme_run_commands_pass_valid_parameters() -> None:
    runs = readme_commands("gcloud dataflow flex-template run")
    assert {t for cmd in runs for t in TEMPLATES if f"templates/{t}.json" in " ".join(cmd)} == set(TEMPLATES)
    for cmd in runs:
        template = next(t for t in TEMPLATES if f"gs://my-bucket/templates/{t}.json" in " ".join(cmd))
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
        check_parameters(template, given)


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
