"""The client: one method per twd route, over one generic request helper.

Tables come from the daemon's CSV (``format=csv``), read so that token texts
stay text and empty cells ("does not apply") become NaN; ``as_json=True``
gives the JSON answer of the same request instead. The names of the columns
are the JSON's (docs/API.md in the twd repository is the vocabulary).
"""
import io
import json
import time
import urllib.parse

import numpy as np
import pandas as pd
import requests

# Columns that hold text whatever their cells look like: a token's text can
# be "123", "NA" or "nan", a probe word "1". Any column whose name ends in
# "_text" is text too.
TEXT_COLUMNS = frozenset(
    {"text", "word", "state", "kind", "list", "side", "probe", "scheme", "matrix", "name", "projection", "stage",
     "quantity", "method", "statistic", "bucket"})

# Every route of twd and the Client method that asks it (a test checks that
# every path of the daemon's /openapi.json is here).
ROUTES = {
    "/health": "health",
    "/model": "model",
    "/models": "models",
    "/tokenize": "tokenize",
    "/detokenize": "detokenize",
    "/metrics": "metrics",
    "/openapi.json": "openapi",
    "/embeddings": "embeddings",
    "/embeddings/scores": "embeddings_scores",
    "/embeddings/normalization": "embeddings_normalization",
    "/probe": "probe",
    "/svd": "svd",
    "/svd/bias": "svd_bias",
    "/trajectory": "trajectory",
    "/trajectory/stats": "trajectory_stats",
    "/trajectory/stats/job": "trajectory_stats_job",
    "/trajectory/stats/job/status": "trajectory_stats_job_status",
    "/trajectory/stats/job/result": "trajectory_stats_job_result",
    "/trajectory/stats/job/cancel": "trajectory_stats_job_cancel",
    "/sweep/job": "sweep_job",
    "/sweep/job/status": "sweep_job_status",
    "/sweep/job/result": "sweep_job_result",
    "/sweep/job/cancel": "sweep_job_cancel",
    "/attention": "attention",
    "/umap": "umap",
    "/umap/layout": "umap_layout",
    "/umap/layout/tokens": "umap_layout_tokens",
    "/mlp/values": "mlp_values",
    "/mlp/svd": "mlp_svd",
    "/mlp/updates": "mlp_updates",
    "/mlp/search": "mlp_search",
    "/layernorm": "layernorm",
    "/layernorm/sketch": "layernorm_sketch",
    "/selfcheck": "selfcheck",
}

# Above this many bytes of query string a route that takes POST is asked by
# POST with a JSON body (twd's default max_url is 64 KiB).
_MAX_QUERY = 4096


class TwdError(Exception):
    """An error answer of twd: {"error": {"code", "type", "message"}}.

    Attributes: ``status`` (the HTTP status), ``type`` (e.g.
    "invalid_request", "unavailable"), ``message`` (the server's message,
    which names the parameter and its allowed values), ``retry_after``
    (seconds, from the Retry-After header, or None), ``url``, and ``body``
    (the decoded JSON answer, or the text of an answer that was not JSON).
    """

    def __init__(self, status, type, message, retry_after=None, url=None, body=None):
        super().__init__("%s %s: %s" % (status, type, message))
        self.status = status
        self.type = type
        self.message = message
        self.retry_after = retry_after
        self.url = url
        self.body = body


def _text_column(name):
    return name in TEXT_COLUMNS or name.endswith("_text")


def read_csv(body):
    """Reads one of twd's CSV answers (bytes or str) into a DataFrame.

    Token texts such as "NA", "null" or "nan" stay text
    (``keep_default_na=False``), empty cells become NaN, text columns are
    str even when every cell looks like a number, numeric columns are numeric
    (a column with empty cells, like the probe's ``head`` on layer rows, is
    float64 with NaN there)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    # the header is names without quotes or commas (the vocabulary's)
    cols = body.split(b"\n", 1)[0].decode("utf-8").strip().split(",")
    dtype = {c: str for c in cols if _text_column(c)}
    # pandas' C parser ends a cell at a NUL byte (GPT-2 has a token of the
    # byte 0); its Python parser keeps it
    engine = "python" if b"\x00" in body else "c"
    return pd.read_csv(io.BytesIO(body), keep_default_na=False, na_values=[""], dtype=dtype, encoding="utf-8",
                       engine=engine)


def _query_value(v):
    v = _json_value(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def _listify(v, item=str):
    """A list parameter as a list: None stays None, a str is split at commas
    as the daemon splits a query ("time,year"), anything else is iterated."""
    if v is None:
        return None
    if isinstance(v, str):
        return [item(x) for x in v.split(",")]
    if isinstance(v, (int, np.integer)):
        return [v]
    return list(v)


def _json_value(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_json_value(x) for x in v]
    return v


def _retry_seconds(value):
    """Retry-After as seconds (twd sends delta-seconds), or None."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Client:
    """A twd daemon at ``url``.

    - ``model``: the name of the model to ask (a daemon may serve several;
      ``Client.models()`` lists them); None asks the default one. Sent as
      ``model=`` on every route that analyses a model (``model_name`` holds
      it). ``with_model(name)``
      gives a client for another model that shares this one's connection.
    - ``api_key``: sent as ``Authorization: Bearer <api_key>`` (the daemon's
      ``api_key`` option).
    - ``timeout``: seconds per HTTP request (the analyses of a large model can
      take a while the first time they are asked).
    - ``retry``: when True, an answer 503 with a Retry-After header (the model
      or the UMAP layout is still loading, the queue is full) is asked again
      after that many seconds, for at most ``max_wait`` seconds in all; then,
      or with retry=False, the 503 raises TwdError.

    Every method raises TwdError for an error answer (its ``message`` is the
    server's), and requests' exceptions when the daemon cannot be reached.
    Tables are pandas DataFrames whose columns have the names of the JSON
    answer; ``as_json=True`` returns the JSON answer of the same request.
    """

    def __init__(self, url="http://localhost:8080", model=None, api_key=None, timeout=300.0, retry=False,
                 max_wait=300.0, session=None):
        self.url = url.rstrip("/")
        self.model_name = model
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry
        self.max_wait = max_wait
        self.session = session or requests.Session()

    def __repr__(self):
        return "Client(%r, model=%r)" % (self.url, self.model_name)

    def close(self):
        """Closes the connections (also ``with Client(...) as c:``)."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def with_model(self, model):
        """A client of the same daemon (and connection) that asks ``model``."""
        return Client(self.url, model=model, api_key=self.api_key, timeout=self.timeout, retry=self.retry,
                      max_wait=self.max_wait, session=self.session)

    # ------------------------------------------------------------------
    # the generic part: every method below is a few lines over these

    def request(self, path, params=None, format="json", post=False, model=True):
        """Asks ``path`` (e.g. "/svd") with ``params`` (None values are left
        out) and returns the answer as ``format``:

        - "json": the decoded JSON; "csv": a DataFrame (``format=csv`` is sent);
        - "npy": a numpy array (``format=npy`` is sent); "latex" (``format=latex``
          is sent) and "text": a str; "bytes": the raw body;
        - "response": the requests.Response.

        ``post``: True when the route takes GET and POST: a request with a list
        parameter or a long query then goes as POST with a JSON body;
        "always" for a route that takes POST only. ``model``:
        False for the routes that are about the daemon, not a model (they
        refuse a ``model`` parameter). Use it for routes this client does not
        know yet: ``client.request("/new/route", {"block": 3}, "csv")``."""
        q = {k: v for k, v in (params or {}).items() if v is not None}
        if format in ("csv", "npy", "latex"):
            q["format"] = format
        if model and self.model_name is not None:
            q["model"] = self.model_name
        use_post = post == "always"
        if post and not use_post:
            has_list = any(isinstance(v, (list, tuple, np.ndarray)) for v in q.values())
            use_post = has_list or len(urllib.parse.urlencode({k: _query_value(v) for k, v in q.items()})) > _MAX_QUERY
        if use_post:
            r = self._send("POST", path, data=json.dumps({k: _json_value(v) for k, v in q.items()}).encode("utf-8"),
                           headers={"Content-Type": "application/json"})
        else:
            r = self._send("GET", path, params={k: _query_value(v) for k, v in q.items()})
        if format == "json":
            return r.json()
        if format == "csv":
            return read_csv(r.content)
        if format == "npy":
            return np.load(io.BytesIO(r.content), allow_pickle=False)
        if format in ("text", "latex"):
            if "charset=" not in r.headers.get("Content-Type", ""):
                r.encoding = "utf-8"  # twd's text is UTF-8 (requests would guess Latin-1)
            return r.text
        if format == "bytes":
            return r.content
        if format == "response":
            return r
        raise ValueError("format must be json, csv, npy, latex, text, bytes or response, got %r" % (format,))

    def _send(self, method, path, **kw):
        headers = dict(kw.pop("headers", None) or {})
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        deadline = time.monotonic() + self.max_wait
        while True:
            r = self.session.request(method, self.url + path, headers=headers, timeout=self.timeout, **kw)
            if r.status_code < 400:
                return r
            after = _retry_seconds(r.headers.get("Retry-After"))
            if self.retry and r.status_code == 503 and after is not None:
                wait = min(max(after, 0.1), 30.0)
                if time.monotonic() + wait <= deadline:
                    time.sleep(wait)
                    continue
            raise self._error(r, after)

    @staticmethod
    def _error(r, retry_after):
        try:
            body = r.json()
            err = body["error"]
            return TwdError(r.status_code, err.get("type", "error"), err.get("message", ""), retry_after, r.url,
                            body)
        except (ValueError, KeyError, TypeError, AttributeError):
            text = r.text
            return TwdError(r.status_code, "http", text.strip()[:500] or r.reason, retry_after, r.url, text)

    def _data(self, path, params, as_json, post=False):
        """The route's table (CSV), or its JSON answer when as_json."""
        return self.request(path, params, "json" if as_json else "csv", post=post)

    # ------------------------------------------------------------------
    # the service

    def health(self):
        """GET /health: {"status": "ok", "model", "synthetic", "models"} when
        every model is ready. While one loads the daemon answers 503 with
        Retry-After: TwdError (or, with retry=True, the wait)."""
        return self.request("/health", model=False)

    def wait_ready(self, timeout=300.0):
        """Polls /health until the daemon is ready (or raises the last
        TwdError after ``timeout`` seconds); returns the health answer."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except TwdError as e:
                if e.status != 503 or e.retry_after is None or time.monotonic() >= deadline:
                    raise
                time.sleep(min(max(e.retry_after, 0.1), max(deadline - time.monotonic(), 0.1)))

    def model(self):
        """GET /model: the model's name, source, shapes (n_layer, n_head,
        n_embd, n_ctx, vocab_size, ...), parameter count, whether it is
        synthetic, the UMAP state. A dict."""
        return self.request("/model")

    def models(self, as_json=False):
        """GET /models: every model the daemon serves (the names ``model=``
        takes). Columns: name, default, state, origin, source, synthetic,
        n_layer, n_head, n_embd, n_ctx, vocab_size, n_params (the shape
        columns only for models that are ready)."""
        doc = self.request("/models", model=False)
        return doc if as_json else pd.DataFrame(doc["models"])

    def tokenize(self, text, as_json=False):
        """GET/POST /tokenize: GPT-2 byte-level BPE of ``text``.
        Columns: position, id, text. JSON: {text, n_tokens, tokens: [{id, text,
        bytes}]} (``bytes`` are exact; ``text`` has invalid UTF-8 replaced)."""
        return self._data("/tokenize", {"text": text}, as_json, post=True)

    def detokenize(self, ids, as_json=False):
        """GET/POST /detokenize: token ids back to text.
        Columns: position, id, text. JSON: {text, bytes, n_tokens, tokens} with
        the decoded text of all the ids and its exact bytes."""
        return self._data("/detokenize", {"ids": _listify(ids, int)}, as_json, post=True)

    def metrics(self):
        """GET /metrics: the Prometheus text exposition (a str)."""
        return self.request("/metrics", format="text", model=False)

    def openapi(self):
        """GET /openapi.json: the OpenAPI 3 description of every route (a dict)."""
        return self.request("/openapi.json", model=False)

    # ------------------------------------------------------------------
    # the analyses (docs/MATH.md in the twd repository). A parameter left at
    # None is not sent: the daemon's default, given in brackets, applies
    # (and its bounds, which follow the model: top <= the head dimension).

    def embeddings(self, scheme=None, k=None, as_json=False):
        """GET /embeddings (MATH §3.1): per scheme the top-k and bottom-k tokens
        of the embedding norms under ln_f. ``scheme``: all, norm, scaled, bias
        or scaled_bias [all]; ``k`` [5].
        Columns: scheme, list (top|bottom), rank, id, text, score."""
        return self._data("/embeddings", {"scheme": scheme, "k": k}, as_json)

    def embeddings_scores(self, as_json=False):
        """GET /embeddings/scores (MATH §16): every token's four scores of
        /embeddings, in id order.
        Columns: id, text, norm, scaled, bias, scaled_bias (JSON: tokens and
        scores per scheme)."""
        return self._data("/embeddings/scores", {}, as_json)

    def embeddings_scores_array(self):
        """GET /embeddings/scores?format=npy: the scores alone as a float64
        array of shape (vocab_size, 4), columns norm, scaled, bias,
        scaled_bias; row i is token i."""
        return self.request("/embeddings/scores", {}, "npy")

    def embeddings_normalization(self, as_json=False):
        """GET /embeddings/normalization (MATH §3.2): distances of E, E - c, sE,
        s(E - c) to LN_0(E).
        Columns: matrix, l2_mean, l2_std, cos_mean, cos_std (JSON also has
        avg_norm and scale)."""
        return self._data("/embeddings/normalization", {}, as_json)

    def probe(self, block, words=None, k=None, leading_space=None, as_json=False):
        """GET/POST /probe (MATH §4): attention heads probed with words.
        ``block``: an int, or "all" or "A-B" for a whole-model sweep (the
        JSON {first_block, last_block, n_blocks, blocks: [one-block
        answers]}; the table: the one-block tables one after the other).
        ``words``: a list (sent by POST, so words may hold commas), or one str
        of comma-separated words [the paper's 100 nouns]; ``k`` [5];
        ``leading_space``: encode " word", as inside a sentence [False]. Words
        that are not one token are the rows of ``kind`` skipped, one per token
        of their split.
        Columns: block, word, token_id, kind (head|layer|skipped), head (NaN on
        layer and skipped rows), list (keys|values), rank, id, text, score,
        norm (||u_h|| per head, ||U|| for the layer; NaN on keys rows)."""
        return self._data("/probe", {"block": block, "words": _listify(words), "k": k,
                                     "leading_space": leading_space}, as_json, post=True)

    def svd(self, block, matrix=None, top=None, k=None, head=None, table=None, as_json=False):
        """GET /svd (MATH §5): SVD of W_qk and W_vo per head.
        ``block``: an int, or "all" / "A-B" (a sweep, as probe()).
        ``matrix``: both, qk or vo [both]; ``top``: directions per head, at most
        the head dimension [20] (0: spectra only); ``k`` tokens per side [5];
        ``head``: one head [all]; ``table``: directions or spectra [directions
        when top > 0].
        directions columns: block, matrix, head, direction, singular_value,
        sign, side (left|right), rank, id, text, score.
        spectra columns: block, matrix, head, rank, singular_value, coverage."""
        return self._data("/svd", {"block": block, "matrix": matrix, "top": top, "k": k, "head": head,
                                   "table": None if as_json else table}, as_json)

    def svd_latex(self, block, matrix=None, top=None, k=None, head=None):
        """GET /svd?format=latex: the paper's tables (rank, top-k left and
        right tokens) as LaTeX source (a str); parameters as svd()."""
        return self.request("/svd", {"block": block, "matrix": matrix, "top": top, "k": k, "head": head},
                            "latex")

    def svd_bias(self, block, k=None, as_json=False):
        """GET /svd/bias (MATH §6): per head the tokens of a = W_q b_k, -a,
        c = W_k b_q, -c; ``k`` [5]. ``block``: an int, or "all" / "A-B" (a
        sweep, as probe()).
        Columns: block, head, probe (a|-a|c|-c), rank, id, text, score."""
        return self._data("/svd/bias", {"block": block, "k": k}, as_json)

    def trajectory(self, text, projection=None, gelu=None, k=None, target=None, table=None, vectors=None,
                   as_json=False):
        """GET/POST /trajectory (MATH §7-§8): the phrase's tokens through the
        layers, projected to 3D, with the logit lens.
        ``projection``: umap (503 until the background fit is ready; see
        retry) or pca [umap]; ``gelu``: tanh or erf [tanh]; ``k``: nearest
        tokens per state and position [5]; ``target``: a token id or a text
        that is one token, whose rank and probability are reported;
        ``table``: points, nearest or vectors [points]; ``vectors``: include the
        state vectors in the JSON answer [False] (trajectory_vectors gives
        them as an array).
        Every table starts with state_index, state, block (NaN before the
        first block), position, token_id, token_text; then
        points: x, y, z, entropy, next_id, next_rank, next_prob, target_id,
        target_rank, target_prob (NaN where they do not apply);
        nearest: rank, id, text, score, prob;
        vectors: v0 .. v{d-1}."""
        params = {"text": text, "projection": projection, "gelu": gelu, "k": k,
                  "target": None if target is None else str(target)}
        if as_json:
            params["vectors"] = vectors
        else:
            params["table"] = table
        return self._data("/trajectory", params, as_json, post=True)

    def trajectory_vectors(self, text, gelu=None):
        """GET/POST /trajectory?format=npy: every state vector of the phrase as
        one float32 array of shape (states, tokens, d): the embedding, +
        position, its ln_f, then ln_f of the residual stream after each
        block (MATH §7.3). ``gelu``: tanh or erf [tanh]."""
        return self.request("/trajectory", {"text": text, "gelu": gelu}, "npy", post=True)

    def trajectory_stats(self, texts=None, corpus=None, limit=None, k=None, gelu=None, as_json=False):
        """POST /trajectory/stats (MATH §14): per trajectory state, over every
        position of many texts that has a next token, in the full dimension:
        cos_next, cos_self, cos_final, rank_next (its mean, std and ci95 are
        of ln(rank)) and prob_next, overall and per position bucket. Give
        ``texts`` (a list of str) or ``corpus`` (a shipped corpus:
        kjv-heldout); ``limit``: only the first texts [0: all]; ``k``: the
        top-k of rank_next.topk [5]; ``gelu``: tanh or erf [tanh].
        Columns: state_index, state, block, statistic, bucket (all, first,
        early, late), n_positions, mean, std, ci95_low, ci95_high, median,
        top1, topk (the last three for rank_next only; NaN elsewhere)."""
        return self._data("/trajectory/stats", self._stats_params(texts, corpus, limit, k, gelu), as_json,
                          post="always")

    @staticmethod
    def _stats_params(texts, corpus, limit, k, gelu):
        return {"texts": None if texts is None else _listify(texts), "corpus": corpus, "limit": limit, "k": k,
                "gelu": gelu}

    def trajectory_stats_job(self, texts=None, corpus=None, limit=None, k=None, gelu=None):
        """POST /trajectory/stats/job: starts the computation of
        trajectory_stats (the same parameters, checked at once) in the
        background. A dict: job (its id), state, stage, done, total, progress,
        n_texts, n_tokens, seconds, result."""
        return self.request("/trajectory/stats/job", self._stats_params(texts, corpus, limit, k, gelu),
                            post="always")

    def trajectory_stats_job_status(self, job):
        """GET /trajectory/stats/job/status: the job's state (running, done,
        failed), stage and progress. A dict, as trajectory_stats_job's."""
        return self.request("/trajectory/stats/job/status", {"id": job})

    def trajectory_stats_job_result(self, job, wait=None, as_json=False):
        """GET /trajectory/stats/job/result: the finished job's statistics, as
        trajectory_stats answers them. ``wait``: seconds (at most 30) to wait
        for a running job [0]; a job still running raises TwdError 503 (with
        retry=True the client waits)."""
        return self._data("/trajectory/stats/job/result", {"id": job, "wait": wait}, as_json)

    def trajectory_stats_job_cancel(self, job):
        """POST /trajectory/stats/job/cancel: asks the running job to stop (it
        ends "cancelled"; its result then raises TwdError 410). A job that has
        ended stays as it ended. A dict, as trajectory_stats_job's."""
        return self.request("/trajectory/stats/job/cancel", {"id": job}, post="always")

    def sweep_job(self, path, query):
        """POST /sweep/job: starts the whole-model sweep of ``path`` ("/svd",
        "/svd/bias", "/probe" or "/mlp/svd") with ``query`` (a dict of its
        parameters, block "all" or "A-B", or the query string) in the
        background. A dict: job (its id), state, path, stage, done and total
        (blocks), progress, seconds, status, result."""
        if not isinstance(query, str):
            query = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self.request("/sweep/job", {"path": path, "query": query}, post="always")

    def sweep_job_status(self, job):
        """GET /sweep/job/status: the sweep job's state and the blocks
        answered so far. A dict, as sweep_job's."""
        return self.request("/sweep/job/status", {"id": job})

    def sweep_job_result(self, job, wait=None, format="json"):
        """GET /sweep/job/result: the finished sweep's answer, as its route
        gives it: decoded JSON, or with format="text" the CSV or LaTeX text
        its query asked for. ``wait``: seconds (at most 30) to wait for a
        running job [0]; a job still running raises TwdError 503."""
        return self.request("/sweep/job/result", {"id": job, "wait": wait}, format)

    def sweep_job_cancel(self, job):
        """POST /sweep/job/cancel: asks the running sweep to stop at its next
        block (it ends "cancelled", the blocks answered stay cached; its result
        then raises TwdError 410). A job that has ended stays as it ended. A
        dict, as sweep_job's."""
        return self.request("/sweep/job/cancel", {"id": job}, post="always")

    def attention(self, text, block=None, head=None, gelu=None, as_json=False):
        """GET/POST /attention: the attention patterns of the forward pass.
        ``block`` [all], ``head`` [all], ``gelu`` [tanh].
        Columns: block, head, query_pos, key_pos, weight (the causal rows only:
        key_pos <= query_pos)."""
        return self._data("/attention", {"text": text, "block": block, "head": head, "gelu": gelu}, as_json,
                          post=True)

    def attention_matrix(self, text, block=None, head=None, gelu=None):
        """The attention patterns as a float32 array (blocks, heads, T, T),
        row t the weights query t gives to keys 0..T-1 (zero above the
        diagonal). The block axis is left out when ``block`` is given and the
        head axis when ``head`` is given: attention_matrix(text, 5, 3) is T x T."""
        doc = self.attention(text, block=block, head=head, gelu=gelu, as_json=True)
        m = np.array([[h["pattern"] for h in b["heads"]] for b in doc["blocks"]], dtype=np.float32)
        if head is not None:
            m = m[:, 0]
        if block is not None:
            m = m[0]
        return m

    def umap_layout(self, projection=None, limit=None, as_json=False):
        """GET /umap/layout: the fitted background points (the vocabulary
        rows the projection was fitted on). ``projection``: umap or pca
        [umap]; ``limit``: points, spread evenly [0: all; more than there are:
        all].
        Columns: id, text, x, y, z."""
        return self._data("/umap/layout", {"projection": projection, "limit": limit}, as_json)

    def umap_layout_array(self, projection=None, limit=None):
        """GET /umap/layout?format=npy: the points alone as a float32 array
        of shape (n, 3); row i is row i of umap_layout (the same values) and
        of umap_layout_tokens."""
        return self.request("/umap/layout", {"projection": projection, "limit": limit}, "npy")

    def umap_layout_tokens(self, projection=None, limit=None, as_json=False):
        """GET /umap/layout/tokens: the ids and texts of the points of
        umap_layout, in their order (no bytes).
        Columns: id, text (JSON: ids and texts, two arrays)."""
        return self._data("/umap/layout/tokens", {"projection": projection, "limit": limit}, as_json)

    def umap(self):
        """GET /umap: the state of the background UMAP fit (disabled, fitting
        with progress, ready, failed). A dict."""
        return self.request("/umap")

    # ------------------------------------------------------------------
    # beyond the paper: the MLP, layer normalisation, the self-check
    # (MATH §9-§13); None: the daemon's default, in brackets.

    def mlp_values(self, block, neurons=None, k=None, as_json=False):
        """GET /mlp/values (MATH §9.1): each neuron's value vector (row of
        mlp.c_proj.weight), its norm and top-k and bottom-k tokens against wte.
        ``neurons``: a list of neuron indices [all d_ff]; ``k`` [5].
        Columns: block, neuron, norm, list (top|bottom), rank, id, text, score."""
        return self._data("/mlp/values", {"block": block, "neurons": _listify(neurons, int),
                                          "k": k}, as_json)

    def mlp_svd(self, block, matrix=None, top=None, k=None, table=None, as_json=False):
        """GET /mlp/svd (MATH §10): SVD of mlp.c_fc (``matrix`` in) and
        mlp.c_proj (out) [both]; ``top`` directions with lists [20] (0: spectra
        only), ``k`` tokens and neurons per list [5]; ``table``: directions or
        spectra [directions]. ``block``: an int, or "all" / "A-B" (a sweep, as
        probe()).
        directions columns: block, matrix, direction, singular_value, sign, side
        (left|right), list (tokens|neurons), rank, id, text, neuron, score
        (id and text NaN on neuron rows, neuron NaN on token rows).
        spectra columns: block, matrix, rank, singular_value, coverage."""
        return self._data("/mlp/svd", {"block": block, "matrix": matrix, "top": top, "k": k,
                                       "table": None if as_json else table}, as_json)

    def mlp_updates(self, text, block=None, top=None, k=None, gelu=None, as_json=False):
        """GET/POST /mlp/updates (MATH §11): per block and token the heaviest
        MLP sub-updates m_i v_i. ``block`` [every block]; ``top`` sub-updates
        per token and block [10]; ``k`` tokens per value vector [5]; ``gelu``
        [tanh].
        Columns: block, position, token_id, token_text, update_norm, rank,
        neuron, coefficient, norm, weight, value_rank, id, text, score (one row
        per sub-update and token of its value vector)."""
        return self._data("/mlp/updates", {"text": text, "block": block, "top": top, "k": k, "gelu": gelu},
                          as_json, post=True)

    def mlp_search(self, token, block=None, k=None, as_json=False):
        """GET /mlp/search (MATH §9.2): the neurons whose value vectors promote
        ``token`` (an id, or a text that is one token). ``block`` [every
        block]; ``k`` neurons [10].
        Columns: rank, block, neuron, score, norm, token_rank."""
        return self._data("/mlp/search", {"token": str(token), "block": block, "k": k}, as_json)

    def layernorm(self, text=None, k=None, keys=None, queries=None, keys_block=None, seed=None, gelu=None,
                  table=None, as_json=False):
        """GET/POST /layernorm (MATH §12): every LayerNorm on the states that
        reach it (wte's rows, or ``text``'s states). ``keys``: the estimate of
        unselectable keys, targeted, random or none [targeted], with
        ``queries`` per head [256], for ``keys_block`` [every block], ``seed``
        [0]; ``table``: layers, lists or keys [layers].
        layers columns: name, block, kind, rows, mean_before, mean_abs_before,
        mean_abs_after, max_abs_after, radius_mean, radius_std,
        gamma_max_index, gamma_max, gamma_min_index, gamma_min, beta_norm,
        change_mean, change_std.
        lists columns: name, list, rank, id, text, score.
        keys columns: block, head, method, queries, selectable,
        unselectable_fraction."""
        return self._data("/layernorm", {"text": text, "k": k, "keys": keys, "queries": queries,
                                         "keys_block": keys_block, "seed": seed, "gelu": gelu,
                                         "table": None if as_json else table}, as_json, post=True)

    def layernorm_sketch(self, block=None, head=None, dims=None, points=None, as_json=False):
        """GET /layernorm/sketch (MATH §12.4): the paper's 2D sketch on real
        weights: the unit circle in coordinates ``dims`` (two indices [the two
        largest |gamma| of ln_1]) of ``block`` [0], under gamma, + beta, then
        ``head``'s [0] W_qk; ``points`` on the circle [64].
        Columns: stage (circle|gamma|gamma+beta|w_qk), point, theta, x, y."""
        return self._data("/layernorm/sketch", {"block": block, "head": head,
                                                "dims": _listify(dims, int), "points": points},
                          as_json)

    def selfcheck(self, text, block=None, seed=None, gelu=None, as_json=False):
        """GET/POST /selfcheck (MATH §13): attention rebuilt from the paper's
        per-head factors, compared with the forward pass, and with b_k
        randomised. ``block`` [every block]; ``seed`` of the random b_k [0].
        Columns: block, head (NaN on the block's total_output row), quantity,
        max_abs_diff, max_rel_diff (NaN where it does not apply)."""
        return self._data("/selfcheck", {"text": text, "block": block, "seed": seed, "gelu": gelu}, as_json,
                          post=True)
