"""Triton's own Python clients (tritonclient.grpc and tritonclient.http, from
PyPI) against a real dytserve-server on loopback: every core and extension
call, sync, async and streaming, with outputs equal to those of dytserve's own
client (dytserve-cli); bad REST requests; and the README's curl examples.

Needs DYTSERVE_SERVER_BIN, DYTSERVE_CLI_BIN and DYTSERVE_TEST_REPO.
"""
import json
import os
import queue
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

SERVER = os.environ["DYTSERVE_SERVER_BIN"]
CLI = os.environ["DYTSERVE_CLI_BIN"]
REPO = os.environ["DYTSERVE_TEST_REPO"]
ADMIN = "tritonclient-admin-token"
AUTH = {"authorization": f"Bearer {ADMIN}"}


addresses = {}


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory() as tmp:
        token = os.path.join(tmp, "admin.token")
        with open(token, "w") as f:
            f.write(ADMIN + "\n")
        proc = subprocess.Popen(
            [SERVER, f"--model_repository={REPO}", f"--admin_token_file={token}", "--host=127.0.0.1",
             "--grpc_port=0", "--metrics_port=0", "--http_port=0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline()
        assert line.startswith("dytserve listening grpc="), line
        fields = dict(f.split("=", 1) for f in line.split()[2:])
        addresses["http"] = fields["http"]
        yield fields["grpc"]
        proc.terminate()
        assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def client(server):
    return grpcclient.InferenceServerClient(url=server)


def vit_rows(rows, seed):
    return np.random.default_rng(seed).standard_normal((rows, 1, 8, 8)).astype(np.float32)


def tokens(rows, length, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(rows, length), dtype=np.int64)


def cli_outputs(server, model, name, array):
    """What dytserve's own client answers for `array`, as a numpy array."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"inputs": [{"name": name, "datatype": "FP32" if array.dtype == np.float32 else "INT64",
                               "shape": list(array.shape), "data": array.ravel().tolist()}]}, f)
    try:
        out = subprocess.run([CLI, "infer", model, f"--target={server}", f"--input_json={f.name}", "--top_k=0",
                              "--max_values=1000000"], capture_output=True, text=True, timeout=60, check=True)
    finally:
        os.unlink(f.name)
    first = json.loads(out.stdout)["outputs"][0]
    return np.array(first["values"], dtype=np.float32).reshape(first["shape"])


def infer_inputs(name, array):
    datatype = "FP32" if array.dtype == np.float32 else "INT64"
    x = grpcclient.InferInput(name, list(array.shape), datatype)
    x.set_data_from_numpy(array)
    return [x]


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("vit_dyt")
    assert not client.is_model_ready("no_such_model")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "dytserve"
    assert sorted(meta["extensions"]) == ["model_configuration", "model_repository", "statistics"]
    model = client.get_model_metadata("llama_dyt", as_json=True)
    assert model["inputs"][0]["datatype"] == "INT64"
    assert model["inputs"][0]["shape"] == ["-1", "-1"]


def test_model_config_as_perf_analyzer_reads_it(client):
    config = client.get_model_config("vit_dyt", as_json=True)["config"]
    assert config["name"] == "vit_dyt"
    assert config["platform"] == "pytorch_libtorch"
    assert config["max_batch_size"] == 64
    assert config["input"][0]["name"] == "pixel_values"
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == ["1", "8", "8"]
    assert "dynamic_batching" in config
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    with pytest.raises(InferenceServerException, match="no_such_model"):
        client.get_model_config("no_such_model")


@pytest.mark.parametrize("model,name,make", [
    ("vit_dyt", "pixel_values", lambda: vit_rows(3, 1)),
    ("vit_ln", "pixel_values", lambda: vit_rows(2, 2)),
    ("llama_dyt", "input_ids", lambda: tokens(2, 7, 3)),
])
def test_sync_async_and_stream_equal_dytserve_client(server, client, model, name, make):
    x = make()
    expected = cli_outputs(server, model, name, x)

    sync = client.infer(model, infer_inputs(name, x), request_id="sync")
    assert sync.get_response().id == "sync"
    out_name = sync.get_response().outputs[0].name
    np.testing.assert_allclose(sync.as_numpy(out_name), expected, rtol=1e-5, atol=1e-5)

    done = queue.Queue()
    client.async_infer(model, infer_inputs(name, x), callback=lambda result, error: done.put((result, error)))
    result, error = done.get(timeout=60)
    assert error is None, error
    np.testing.assert_allclose(result.as_numpy(out_name), expected, rtol=1e-5, atol=1e-5)

    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(4):
            client.async_stream_infer(model, infer_inputs(name, x), request_id=f"s{i}")
        got = {}
        for _ in range(4):
            result, error = answers.get(timeout=60)
            assert error is None, error
            got[result.get_response().id] = result.as_numpy(out_name)
    finally:
        client.stop_stream()
    assert sorted(got) == ["s0", "s1", "s2", "s3"]
    for value in got.values():
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)


def test_stream_error_travels_in_band_and_the_stream_lives_on(client):
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("no_such_model", infer_inputs("pixel_values", vit_rows(1, 4)), request_id="bad")
        client.async_stream_infer("vit_dyt", infer_inputs("pixel_values", vit_rows(1, 5)), request_id="good")
        outcomes = [answers.get(timeout=60) for _ in range(2)]
    finally:
        client.stop_stream()
    errors = [e for _, e in outcomes if e is not None]
    results = [r for r, e in outcomes if e is None]
    assert len(errors) == 1 and "no_such_model" in str(errors[0])
    assert len(results) == 1 and results[0].get_response().id == "good"


def test_statistics_count_what_was_served(client):
    before = client.get_inference_statistics("vit_ln", as_json=True)["model_stats"][0]
    for seed in range(3):
        client.infer("vit_ln", infer_inputs("pixel_values", vit_rows(2, 10 + seed)))
    after = client.get_inference_statistics("vit_ln", as_json=True)["model_stats"][0]
    success = int(after["inference_stats"]["success"]["count"]) - int(before["inference_stats"]["success"].get("count", 0))
    assert success == 3
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 6
    assert int(after["inference_stats"]["compute_infer"]["ns"]) > 0
    assert after["batch_stats"], after
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {"vit_ln", "vit_dyt", "llama_dyt"} <= {m["name"] for m in every}


def test_repository_calls_with_the_admin_token(client):
    with pytest.raises(InferenceServerException, match="(?i)unauthenticated|token"):
        client.get_model_repository_index()
    index = client.get_model_repository_index(headers=AUTH, as_json=True)["models"]
    assert {"name": "vit_ln", "version": "1", "state": "READY"} in index
    client.unload_model("vit_ln", headers=AUTH)
    assert not client.is_model_ready("vit_ln")
    client.load_model("vit_ln", headers=AUTH)
    deadline = time.time() + 30
    while not client.is_model_ready("vit_ln") and time.time() < deadline:
        time.sleep(0.1)
    assert client.is_model_ready("vit_ln")
    with pytest.raises(InferenceServerException, match="config"):
        client.load_model("vit_ln", headers=AUTH, config='{"max_batch_size": 4}')


# ---- tritonclient.http against the v2 REST endpoint ----

@pytest.fixture(scope="module")
def http(server):
    return httpclient.InferenceServerClient(url=addresses["http"])


def http_inputs(name, array, binary):
    x = httpclient.InferInput(name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT64")
    x.set_data_from_numpy(array, binary_data=binary)
    return [x]


def test_http_health_metadata_config_and_stats(http):
    assert http.is_server_live()
    assert http.is_server_ready()
    assert http.is_model_ready("vit_dyt")
    assert not http.is_model_ready("no_such_model")
    assert sorted(http.get_server_metadata()["extensions"]) == ["model_configuration", "model_repository",
                                                                 "statistics"]
    assert http.get_model_metadata("llama_dyt")["inputs"][0]["shape"] == [-1, -1]
    config = http.get_model_config("vit_dyt")
    assert config["max_batch_size"] == 64 and config["input"][0]["name"] == "pixel_values"
    stats = http.get_inference_statistics("vit_dyt")["model_stats"][0]
    assert stats["name"] == "vit_dyt"
    with pytest.raises(InferenceServerException, match="no_such_model"):
        http.get_model_metadata("no_such_model")


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("model,name,make", [
    ("vit_dyt", "pixel_values", lambda: vit_rows(3, 21)),
    ("llama_dyt", "input_ids", lambda: tokens(2, 6, 22)),
])
def test_http_infer_and_async_equal_dytserve_client(server, http, model, name, make, binary):
    x = make()
    expected = cli_outputs(server, model, name, x)
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=binary)]
    result = http.infer(model, http_inputs(name, x, binary), outputs=outputs, request_id="h1")
    assert result.get_response()["id"] == "h1"
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)
    pending = http.async_infer(model, http_inputs(name, x, binary), outputs=outputs)
    np.testing.assert_allclose(pending.get_result().as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)


def test_http_repository_calls_with_the_admin_token(http):
    with pytest.raises(InferenceServerException):
        http.get_model_repository_index()
    index = http.get_model_repository_index(headers=AUTH)
    assert {"name": "vit_ln", "version": "1", "state": "READY"} in index
    http.unload_model("vit_ln", headers=AUTH)
    assert not http.is_model_ready("vit_ln")
    http.load_model("vit_ln", headers=AUTH)
    assert http.is_model_ready("vit_ln")


def post(path, body):
    request = urllib.request.Request(f"http://{addresses['http']}{path}", data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("body,named", [
    ('{"inputs": [', "not JSON"),
    ('{"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [1]}]}', "1 elements"),
    ('{"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}',
     "pixel_values"),
    ('{"inputs": [{"name": "pixel_values", "shape": [1, 1, 8, 8], "data": []}]}', "datatype"),
])
def test_rest_bad_input_is_400_naming_the_field_and_the_server_lives_on(server, body, named):
    code, answer = post("/v2/models/vit_dyt/infer", body)
    assert code == 400, answer
    assert named in answer["error"], answer
    code, _ = post("/v2/models/vit_dyt/infer", json.dumps(
        {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.0] * 64}]}))
    assert code == 200


def readme_curl_commands():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    block = readme.split("<!-- curl examples: tests/e2e/tritonclient_test.py runs them -->", 1)[1]
    block = block.split("```", 2)[1]
    return [line for line in block.splitlines() if line.startswith("curl ")]


def test_readme_curl_examples_run(server):
    commands = readme_curl_commands()
    assert len(commands) >= 5, commands
    for command in commands:
        command = command.replace("localhost:8000", addresses["http"])
        out = subprocess.run(["bash", "-c", command + " --fail-with-body -sS"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, (command, out.stdout, out.stderr)
        json.loads(out.stdout)  # every example answers JSON
