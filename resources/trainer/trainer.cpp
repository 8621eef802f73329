// Native trainer for the console's `llama` training backend.
//
// Built by electron/core/services/training/trainerBuild.ts (or `npm run build-trainer`) against the
// llama.cpp release that ships inside node-llama-cpp: headers from its git bundle, the prebuilt
// shared libraries from @node-llama-cpp/<platform>[-cuda]/bins. Full fine-tuning of the F32 tensors
// with llama.cpp's optimizer API (llama_opt_init / llama_opt_epoch), like examples/training/finetune.cpp.
//
// Usage: trainer <config.json>
// Config (JSON object):
//   backendDir     dir of the run-time-loaded ggml backends (libggml-cpu-*.so, libggml-cuda.so)
//   modelPath      base GGUF (F32 tensors train; quantized ones stay frozen)
//   datasetPath    UTF-8 text, or JSONL (".jsonl") whose lines are objects with a "text" string
//   outputPath     final GGUF (written to "<outputPath>.partial", then renamed)
//   checkpointDir  where checkpoints go ("" = none)
//   epochs, learningRate, nCtx, threads, validationSplit, saveSteps, gpuLayers
//
// Protocol: one JSON object per line on stdout:
//   {"type":"start","totalSteps","stepsPerEpoch","tokens","nCtx","trainSamples","valSamples"}
//   {"type":"progress","epoch","step","totalSteps","loss","accuracy","learningRate"}
//   {"type":"eval","epoch","step","valLoss","valAccuracy"}
//   {"type":"epoch","epoch","step","loss","accuracy","valLoss","valAccuracy","seconds","tokensPerSecond"}
//   {"type":"checkpoint","step","path"}
//   {"type":"done","output","seconds"}   |   {"type":"error","message"}   |   {"type":"cancelled"}
// Diagnostics (llama.cpp warnings) go to stderr. Exit 0 on success, 1 on error, 143 on SIGTERM.

#include "llama.h"
#include "ggml-backend.h"
#include "ggml-opt.h"
#include "common.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include <dlfcn.h>

// ---------------------------------------------------------------- training-sized compute graphs
// llama.cpp sizes a context's graphs for inference: llama_context::graph_max_nodes() returns
// max(1024, 8 x model tensors). The training graph (forward + backward + optimizer) of a llama with
// 8 or more layers does not fit, and llama.cpp aborts (GGML_ASSERT(... n_nodes ...)). libllama calls
// that member through its PLT, so this executable's definition (exported: the build links with
// -rdynamic) takes its place and returns the library's own value times TRAIN_GRAPH_FACTOR. Only the
// member's name and signature matter here; the context's layout is never touched.
static constexpr uint32_t TRAIN_GRAPH_FACTOR = 8;

struct llama_context {
    uint32_t graph_max_nodes(uint32_t n_tokens) const;
};

uint32_t llama_context::graph_max_nodes(uint32_t n_tokens) const {
    using original_fn = uint32_t (*)(const llama_context *, uint32_t);
    static const original_fn original = reinterpret_cast<original_fn>(dlsym(RTLD_NEXT, "_ZNK13llama_context15graph_max_nodesEj"));
    const uint32_t base = original != nullptr ? original(this, n_tokens) : 1024;
    return base * TRAIN_GRAPH_FACTOR;
}

namespace {

// --- a small JSON reader/writer (config, JSONL datasets, protocol lines) --------------------------
// Kept here instead of a JSON library so the trainer compiles in about a second.

struct JValue {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    double n = 0;
    std::string s;
    std::vector<JValue> a;
    std::map<std::string, JValue> o;
};

class JParser {
  public:
    explicit JParser(const std::string & text) : t_(text) {}
    JValue parse_document() {
        JValue v = value();
        ws();
        if (i_ != t_.size()) fail("trailing characters");
        return v;
    }

  private:
    const std::string & t_;
    size_t i_ = 0;
    [[noreturn]] void fail(const char * what) { throw std::runtime_error(std::string("invalid JSON: ") + what + " at offset " + std::to_string(i_)); }
    void ws() {
        while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
    }
    bool lit(const char * word) {
        size_t n = std::strlen(word);
        if (t_.compare(i_, n, word) != 0) return false;
        i_ += n;
        return true;
    }
    static void put_utf8(std::string & out, unsigned cp) {
        if (cp < 0x80) out += (char) cp;
        else if (cp < 0x800) { out += (char) (0xC0 | (cp >> 6)); out += (char) (0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) { out += (char) (0xE0 | (cp >> 12)); out += (char) (0x80 | ((cp >> 6) & 0x3F)); out += (char) (0x80 | (cp & 0x3F)); }
        else { out += (char) (0xF0 | (cp >> 18)); out += (char) (0x80 | ((cp >> 12) & 0x3F)); out += (char) (0x80 | ((cp >> 6) & 0x3F)); out += (char) (0x80 | (cp & 0x3F)); }
    }
    unsigned hex4() {
        if (i_ + 4 > t_.size()) fail("short \\u escape");
        unsigned v = 0;
        for (int k = 0; k < 4; ++k) {
            char c = t_[i_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= (unsigned) (c - '0');
            else if (c >= 'a' && c <= 'f') v |= (unsigned) (c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= (unsigned) (c - 'A' + 10);
            else fail("bad \\u escape");
        }
        return v;
    }
    std::string str() {
        ++i_;  // opening quote
        std::string out;
        while (true) {
            if (i_ >= t_.size()) fail("unterminated string");
            char c = t_[i_++];
            if (c == '"') return out;
            if (c != '\\') { out += c; continue; }
            if (i_ >= t_.size()) fail("unterminated escape");
            char e = t_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && t_.compare(i_, 2, "\\u") == 0) {
                        i_ += 2;
                        unsigned lo = hex4();
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }
    JValue value() {
        ws();
        if (i_ >= t_.size()) fail("unexpected end");
        JValue v;
        char c = t_[i_];
        if (c == '{') {
            v.kind = JValue::Object;
            ++i_;
            ws();
            if (i_ < t_.size() && t_[i_] == '}') { ++i_; return v; }
            while (true) {
                ws();
                if (i_ >= t_.size() || t_[i_] != '"') fail("expected a key");
                std::string key = str();
                ws();
                if (i_ >= t_.size() || t_[i_] != ':') fail("expected ':'");
                ++i_;
                v.o[key] = value();
                ws();
                if (i_ < t_.size() && t_[i_] == ',') { ++i_; continue; }
                if (i_ < t_.size() && t_[i_] == '}') { ++i_; return v; }
                fail("expected ',' or '}'");
            }
        }
        if (c == '[') {
            v.kind = JValue::Array;
            ++i_;
            ws();
            if (i_ < t_.size() && t_[i_] == ']') { ++i_; return v; }
            while (true) {
                v.a.push_back(value());
                ws();
                if (i_ < t_.size() && t_[i_] == ',') { ++i_; continue; }
                if (i_ < t_.size() && t_[i_] == ']') { ++i_; return v; }
                fail("expected ',' or ']'");
            }
        }
        if (c == '"') { v.kind = JValue::String; v.s = str(); return v; }
        if (lit("true")) { v.kind = JValue::Bool; v.b = true; return v; }
        if (lit("false")) { v.kind = JValue::Bool; return v; }
        if (lit("null")) return v;
        const char * start = t_.c_str() + i_;
        char * end = nullptr;
        v.n = std::strtod(start, &end);
        if (end == start) fail("unexpected character");
        i_ += (size_t) (end - start);
        v.kind = JValue::Number;
        return v;
    }
};

JValue parse_json(const std::string & text) { return JParser(text).parse_document(); }

std::string quote(const std::string & s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) { char buf[8]; std::snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
                else out += (char) c;
        }
    }
    return out + "\"";
}

// One protocol line: {"type": ..., fields in order}. Numbers that are not finite become null.
class Line {
  public:
    explicit Line(const char * type) { body_ = "{\"type\":" + quote(type); }
    Line & num(const char * key, double v) {
        char buf[64];
        if (std::isfinite(v)) std::snprintf(buf, sizeof buf, "%.9g", v);
        else std::snprintf(buf, sizeof buf, "null");
        body_ += std::string(",") + quote(key) + ":" + buf;
        return *this;
    }
    Line & integer(const char * key, int64_t v) {
        body_ += std::string(",") + quote(key) + ":" + std::to_string(v);
        return *this;
    }
    Line & str(const char * key, const std::string & v) {
        body_ += std::string(",") + quote(key) + ":" + quote(v);
        return *this;
    }
    void emit() const {
        std::string text = body_ + "}\n";
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
    }

  private:
    std::string body_;
};

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

struct Config {
    std::string backend_dir;
    std::string model_path;
    std::string dataset_path;
    std::string output_path;
    std::string checkpoint_dir;
    int epochs = 3;
    double learning_rate = 2e-4;
    int n_ctx = 256;
    int threads = 2;
    double validation_split = 0.1;
    int save_steps = 0;
    int gpu_layers = 0;
};

// Training state read by the C callbacks of llama_opt_epoch (they carry no user data).
struct State {
    int epoch = 0;              // 1-based while running
    int epochs = 0;
    int64_t steps_per_epoch = 0;
    int64_t total_steps = 0;
    int64_t step = 0;           // global step after the last train batch
    double learning_rate = 0;
    double last_loss = NAN;
    double last_accuracy = NAN;
    double val_loss = NAN;
    double val_accuracy = NAN;
};
State g_state;

[[noreturn]] void exit_cancelled() {
    Line("cancelled").emit();
    std::_Exit(143);
}

void check_stop() {
    if (g_stop) exit_cancelled();
}

void on_train_batch(bool train, ggml_opt_context_t, ggml_opt_dataset_t, ggml_opt_result_t result, int64_t ibatch,
                    int64_t ibatch_max, int64_t) {
    check_stop();
    double loss = NAN, unc = NAN, acc = NAN, acc_unc = NAN;
    ggml_opt_result_loss(result, &loss, &unc);
    ggml_opt_result_accuracy(result, &acc, &acc_unc);
    if (train) {
        g_state.step = (int64_t) (g_state.epoch - 1) * g_state.steps_per_epoch + ibatch;
        g_state.last_loss = loss;
        g_state.last_accuracy = acc;
        Line("progress").integer("epoch", g_state.epoch).integer("step", g_state.step).integer("totalSteps", g_state.total_steps)
            .num("loss", loss).num("accuracy", acc).num("learningRate", g_state.learning_rate).emit();
    } else if (ibatch == ibatch_max) {
        g_state.val_loss = loss;
        g_state.val_accuracy = acc;
        Line("eval").integer("epoch", g_state.epoch).integer("step", g_state.step).num("valLoss", loss).num("valAccuracy", acc).emit();
    }
}

ggml_opt_optimizer_params opt_params(void * userdata) {
    const Config & cfg = *static_cast<const Config *>(userdata);
    ggml_opt_optimizer_params p = ggml_opt_get_default_optimizer_params(nullptr);
    p.adamw.alpha = (float) cfg.learning_rate;
    p.adamw.wd = 0.0f;
    p.sgd.alpha = (float) cfg.learning_rate;
    p.sgd.wd = 0.0f;
    return p;
}

void log_to_stderr(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

std::string read_file(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool ends_with(const std::string & s, const std::string & suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Plain text as is; JSONL: the "text" of each line, separated by blank lines.
std::string read_dataset(const std::string & path) {
    std::string raw = read_file(path);
    if (!ends_with(path, ".jsonl")) return raw;
    std::string out;
    std::istringstream lines(raw);
    std::string line;
    int lineno = 0;
    while (std::getline(lines, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        JValue row;
        try {
            row = parse_json(line);
        } catch (const std::exception & e) {
            throw std::runtime_error("dataset line " + std::to_string(lineno) + " is not JSON: " + e.what());
        }
        auto text = row.o.find("text");
        if (row.kind != JValue::Object || text == row.o.end() || text->second.kind != JValue::String) {
            throw std::runtime_error("dataset line " + std::to_string(lineno) + " has no \"text\" string");
        }
        if (!out.empty()) out += "\n\n";
        out += text->second.s;
    }
    return out;
}

Config read_config(const std::string & path) {
    JValue j = parse_json(read_file(path));
    if (j.kind != JValue::Object) throw std::runtime_error("config must be a JSON object");
    auto str = [&](const char * key, bool required) -> std::string {
        auto it = j.o.find(key);
        if (it == j.o.end() || it->second.kind == JValue::Null) {
            if (required) throw std::runtime_error(std::string("config: ") + key + " is required");
            return std::string();
        }
        if (it->second.kind != JValue::String) throw std::runtime_error(std::string("config: ") + key + " must be a string");
        return it->second.s;
    };
    auto number = [&](const char * key, double fallback) -> double {
        auto it = j.o.find(key);
        if (it == j.o.end() || it->second.kind == JValue::Null) return fallback;
        if (it->second.kind != JValue::Number) throw std::runtime_error(std::string("config: ") + key + " must be a number");
        return it->second.n;
    };
    Config c;
    c.backend_dir = str("backendDir", true);
    c.model_path = str("modelPath", true);
    c.dataset_path = str("datasetPath", true);
    c.output_path = str("outputPath", true);
    c.checkpoint_dir = str("checkpointDir", false);
    c.epochs = (int) number("epochs", c.epochs);
    c.learning_rate = number("learningRate", c.learning_rate);
    c.n_ctx = (int) number("nCtx", c.n_ctx);
    c.threads = (int) number("threads", c.threads);
    c.validation_split = number("validationSplit", c.validation_split);
    c.save_steps = (int) number("saveSteps", c.save_steps);
    c.gpu_layers = (int) number("gpuLayers", c.gpu_layers);
    if (c.epochs < 1) throw std::runtime_error("epochs must be >= 1");
    if (!(c.learning_rate > 0)) throw std::runtime_error("learningRate must be > 0");
    if (c.threads < 1) c.threads = 1;
    if (c.validation_split < 0 || c.validation_split >= 1) throw std::runtime_error("validationSplit must be in [0, 1)");
    // opt_init asserts n_ctx_train % n_batch == 0 and n_batch % n_ubatch == 0; llama.cpp pads n_ctx
    // to 256, so use multiples of 256 from the start.
    c.n_ctx = std::max(256, ((c.n_ctx + 255) / 256) * 256);
    return c;
}

void save_model(llama_model * model, const std::string & path) {
    const std::string partial = path + ".partial";
    llama_model_save_to_file(model, partial.c_str());
    if (std::rename(partial.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + partial + " to " + path);
}

int run(const Config & cfg) {
    const auto t0 = std::chrono::steady_clock::now();
    llama_log_set(log_to_stderr, nullptr);
    // Trap 1: the CPU (and CUDA) backends are run-time-loaded variant libraries next to libggml.
    ggml_backend_load_all_from_path(cfg.backend_dir.c_str());
    if (ggml_backend_reg_count() == 0) throw std::runtime_error("no ggml backends could be loaded from " + cfg.backend_dir);
    llama_backend_init();

    llama_model_params mparams = llama_model_default_params();
    mparams.load_mode = LLAMA_LOAD_MODE_NONE;  // weights must be writable
    mparams.n_gpu_layers = cfg.gpu_layers;
    llama_model * model = llama_model_load_from_file(cfg.model_path.c_str(), mparams);
    if (!model) throw std::runtime_error("cannot load model " + cfg.model_path + " (see the job log for llama.cpp's reason)");
    check_stop();

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = cfg.n_ctx;
    cparams.n_batch = cfg.n_ctx;
    cparams.n_ubatch = cfg.n_ctx % 512 == 0 ? 512 : 256;
    cparams.n_seq_max = 1;
    cparams.n_threads = cfg.threads;
    cparams.n_threads_batch = cfg.threads;
    cparams.type_k = GGML_TYPE_F32;  // no F16 OUT_PROD for the backward pass
    cparams.type_v = GGML_TYPE_F32;
    cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // no backward for flash attention
    cparams.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cparams);
    if (!ctx) throw std::runtime_error("cannot create a llama context (n_ctx " + std::to_string(cfg.n_ctx) + ")");
    const int n_ctx = (int) llama_n_ctx(ctx);

    const llama_vocab * vocab = llama_model_get_vocab(model);
    const std::string text = read_dataset(cfg.dataset_path);
    std::vector<llama_token> tokens(text.size() + 16);
    int n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(), (int32_t) tokens.size(), true, false);
    if (n < 0) {
        tokens.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(), (int32_t) tokens.size(), true, false);
    }
    if (n < 0) throw std::runtime_error("cannot tokenize the dataset");
    tokens.resize(n);
    const int64_t stride = n_ctx / 2;
    const int64_t needed = n_ctx + 1 + stride * 2;
    if ((int64_t) tokens.size() < needed) {
        throw std::runtime_error("dataset too small: " + std::to_string(tokens.size()) + " tokens; with maxSeqLength " + std::to_string(n_ctx) +
                                 " at least " + std::to_string(needed) + " are needed (two samples)");
    }

    // Trap 2: llama_opt_epoch does not hand the context's thread count to the CPU backend; one
    // ordinary decode does, and it sticks (100x faster on small machines).
    {
        llama_token first = tokens[0];
        llama_batch one = llama_batch_get_one(&first, 1);
        if (llama_decode(ctx, one) != 0) throw std::runtime_error("warm-up decode failed");
        llama_memory_clear(llama_get_memory(ctx), true);
    }

    ggml_opt_dataset_t dataset = common_opt_dataset_init(ctx, tokens, stride);
    const int64_t ndata = ggml_opt_dataset_ndata(dataset);
    int64_t idata_split = (int64_t) std::floor((double) ndata * (1.0 - cfg.validation_split));
    if (cfg.validation_split > 0 && idata_split >= ndata) idata_split = ndata - 1;
    if (idata_split < 1) idata_split = 1;

    llama_opt_params oparams{};
    oparams.n_ctx_train = 0;
    oparams.param_filter = llama_opt_param_filter_all;
    oparams.param_filter_ud = nullptr;
    oparams.get_opt_pars = opt_params;
    oparams.get_opt_pars_ud = const_cast<Config *>(&cfg);
    oparams.optimizer_type = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    llama_opt_init(ctx, model, oparams);

    // Each datapoint (n_ctx tokens) is one optimizer step (n_batch = n_ctx).
    g_state.epochs = cfg.epochs;
    g_state.steps_per_epoch = idata_split;
    g_state.total_steps = idata_split * cfg.epochs;
    g_state.learning_rate = cfg.learning_rate;
    Line("start").integer("totalSteps", g_state.total_steps).integer("stepsPerEpoch", g_state.steps_per_epoch)
        .integer("tokens", (int64_t) tokens.size()).integer("nCtx", n_ctx).integer("trainSamples", idata_split)
        .integer("valSamples", ndata - idata_split).integer("epochs", cfg.epochs).emit();

    ggml_opt_result_t result_train = ggml_opt_result_init();
    ggml_opt_result_t result_eval = ggml_opt_result_init();
    int64_t last_checkpoint = 0;
    for (int e = 1; e <= cfg.epochs; ++e) {
        check_stop();
        g_state.epoch = e;
        g_state.val_loss = NAN;
        g_state.val_accuracy = NAN;
        const auto te = std::chrono::steady_clock::now();
        llama_opt_epoch(ctx, dataset, result_train, result_eval, idata_split, on_train_batch, on_train_batch);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
        double loss = NAN, unc = NAN, acc = NAN;
        ggml_opt_result_loss(result_train, &loss, &unc);
        ggml_opt_result_accuracy(result_train, &acc, &unc);
        const double tokens_per_second = seconds > 0 ? (double) ndata * n_ctx / seconds : 0.0;
        Line("epoch").integer("epoch", e).integer("step", g_state.step).integer("totalSteps", g_state.total_steps).num("loss", loss)
            .num("accuracy", acc).num("valLoss", g_state.val_loss).num("valAccuracy", g_state.val_accuracy).num("seconds", seconds)
            .num("tokensPerSecond", tokens_per_second).num("learningRate", cfg.learning_rate).emit();
        ggml_opt_result_reset(result_train);
        ggml_opt_result_reset(result_eval);
        if (cfg.save_steps > 0 && !cfg.checkpoint_dir.empty() && e < cfg.epochs && g_state.step - last_checkpoint >= cfg.save_steps) {
            check_stop();
            const std::string path = cfg.checkpoint_dir + "/checkpoint-step-" + std::to_string(g_state.step) + ".gguf";
            save_model(model, path);
            last_checkpoint = g_state.step;
            Line("checkpoint").integer("step", g_state.step).str("path", path).emit();
        }
    }
    ggml_opt_result_free(result_train);
    ggml_opt_result_free(result_eval);
    check_stop();
    save_model(model, cfg.output_path);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Line("done").str("output", cfg.output_path).num("seconds", total).integer("steps", g_state.step).emit();
    // Exit without tearing down the backends: nothing is left to flush, and it is faster.
    std::fflush(stdout);
    std::_Exit(0);
}

}  // namespace

int main(int argc, char ** argv) {
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    if (argc != 2) {
        Line("error").str("message", "usage: trainer <config.json>").emit();
        return 1;
    }
    try {
        return run(read_config(argv[1]));
    } catch (const std::exception & e) {
        Line("error").str("message", e.what()).emit();
        return 1;
    }
}
