// Native trainer for the console's `llama` training backend.
//
// Built by electron/core/services/training/trainerBuild.ts (or `npm run build-trainer`) against the
// llama.cpp release that ships inside node-llama-cpp: headers from its git bundle, the prebuilt
// shared libraries from @node-llama-cpp/<platform>[-cuda]/bins, with llama.cpp's optimizer API
// (llama_opt_init / llama_opt_epoch): LoRA (an adapter GGUF trained on a frozen base of any type) or
// full fine-tuning of the F32 tensors, like examples/training/finetune.cpp.
//
// Usage: trainer <config.json>
// Config (JSON object):
//   backendDir     dir of the run-time-loaded ggml backends (libggml-cpu-*.so, libggml-cuda.so)
//   modelPath      base GGUF (F32 tensors train; quantized ones stay frozen)
//   datasetPath    UTF-8 text, or JSONL (".jsonl") whose lines are objects with a "text" string
//   outputPath     final GGUF (written to "<outputPath>.partial", then renamed)
//   checkpointDir  where checkpoints go ("" = none)
//   method         "lora" (loraTargets [{name,nIn,nOut}], loraRank, loraAlpha, architecture, resumeFrom, resumeStep) | "full"
//   epochs, learningRate, lrSchedule (constant|linear|cosine), warmupSteps, weightDecay, nCtx, threads,
//   validationSplit, evalSteps, saveSteps, gpuLayers, parseSpecial (the dataset holds special tokens as text)
//
// Protocol: one JSON object per line on stdout:
//   {"type":"start","totalSteps","stepsPerEpoch","tokens","nCtx","trainSamples","valSamples","method","trainableParams"}
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
#include "gguf.h"
#include "llama-adapter.h"  // internal: the adapter's tensors (ab_map), same commit as the prebuilt libs

#include <algorithm>
#include <array>
#include <random>
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
#include <sys/prctl.h>

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

// One LoRA target: a base weight (ggml shape [n_in, n_out]) that gets <name>.lora_a [n_in, r] and
// <name>.lora_b [r, n_out].
struct LoraTarget {
    std::string name;
    int64_t n_in = 0;
    int64_t n_out = 0;
};

struct Config {
    std::string backend_dir;
    std::string model_path;
    std::string dataset_path;
    std::string output_path;
    std::string checkpoint_dir;
    std::string method = "full";   // "full" | "lora"
    std::string architecture;      // general.architecture of the base (written into the adapter)
    std::string resume_from;       // LoRA: an adapter checkpoint to start from
    int64_t resume_step = 0;
    std::vector<LoraTarget> lora_targets;
    int lora_rank = 8;
    double lora_alpha = 16;
    int epochs = 3;
    double learning_rate = 2e-4;
    std::string lr_schedule = "constant";  // constant | linear | cosine
    int64_t warmup_steps = 0;
    double weight_decay = 0.0;
    int n_ctx = 256;
    int threads = 2;
    double validation_split = 0.1;
    int64_t save_steps = 0;
    int64_t eval_steps = 0;
    int gpu_layers = 0;
    bool parse_special = false;
    uint32_t seed = 42;
};

// Training state read by the C callbacks of llama_opt_epoch (they carry no user data).
struct State {
    const Config * cfg = nullptr;
    int epoch = 0;              // 1-based while running
    int64_t steps_per_epoch = 0;
    int64_t total_steps = 0;
    int64_t step = 0;           // optimizer steps done (global)
    int64_t chunk_base = 0;     // optimizer steps done before the current llama_opt_epoch call
    int64_t ubatch_per_step = 1;  // llama.cpp calls back once per ubatch; n_batch = n_ctx, so a step is this many
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

// Learning rate of optimizer step `k` (1-based): linear warm-up, then constant, linear or cosine decay
// to 0 at the last step. AdamW asserts alpha > 0, so it never reaches exactly 0.
double lr_at(const Config & cfg, int64_t k, int64_t total) {
    const double base = cfg.learning_rate;
    double lr = base;
    if (cfg.warmup_steps > 0 && k <= cfg.warmup_steps) {
        lr = base * (double) k / (double) cfg.warmup_steps;
    } else if (cfg.lr_schedule != "constant" && total > cfg.warmup_steps) {
        const double progress = std::min(1.0, (double) (k - cfg.warmup_steps) / (double) (total - cfg.warmup_steps));
        lr = cfg.lr_schedule == "cosine" ? base * 0.5 * (1.0 + std::cos(M_PI * progress)) : base * (1.0 - progress);
    }
    return std::max(lr, base * 1e-4);
}

void on_train_batch(bool train, ggml_opt_context_t, ggml_opt_dataset_t, ggml_opt_result_t result, int64_t ibatch,
                    int64_t ibatch_max, int64_t) {
    check_stop();
    double loss = NAN, unc = NAN, acc = NAN, acc_unc = NAN;
    if (train) {
        // One optimizer step per window of n_ctx tokens (llama.cpp accumulates its ubatches).
        if (ibatch % g_state.ubatch_per_step != 0) return;
        ggml_opt_result_loss(result, &loss, &unc);
        ggml_opt_result_accuracy(result, &acc, &acc_unc);
        g_state.step = g_state.chunk_base + ibatch / g_state.ubatch_per_step;
        g_state.last_loss = loss;
        g_state.last_accuracy = acc;
        Line("progress").integer("epoch", g_state.epoch).integer("step", g_state.step).integer("totalSteps", g_state.total_steps)
            .num("loss", loss).num("accuracy", acc).num("learningRate", g_state.learning_rate).emit();
    } else if (ibatch == ibatch_max) {
        ggml_opt_result_loss(result, &loss, &unc);
        ggml_opt_result_accuracy(result, &acc, &acc_unc);
        g_state.val_loss = loss;
        g_state.val_accuracy = acc;
        Line("eval").integer("epoch", g_state.epoch).integer("step", g_state.step).num("valLoss", loss).num("valAccuracy", acc).emit();
    }
}

// Called by ggml-opt before every optimizer step: the schedule's rate for the next step.
ggml_opt_optimizer_params opt_params(void * userdata) {
    const Config & cfg = *static_cast<const Config *>(userdata);
    ggml_opt_optimizer_params p = ggml_opt_get_default_optimizer_params(nullptr);
    const double lr = lr_at(cfg, g_state.step + 1, g_state.total_steps);
    g_state.learning_rate = lr;
    p.adamw.alpha = (float) lr;
    p.adamw.wd = (float) cfg.weight_decay;
    p.sgd.alpha = (float) lr;
    p.sgd.wd = (float) cfg.weight_decay;
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
    const std::string method = str("method", false);
    if (!method.empty()) c.method = method;
    if (c.method != "full" && c.method != "lora") throw std::runtime_error("config: method must be \"full\" or \"lora\"");
    c.architecture = str("architecture", false);
    c.resume_from = str("resumeFrom", false);
    c.resume_step = (int64_t) number("resumeStep", 0);
    c.lora_rank = (int) number("loraRank", c.lora_rank);
    c.lora_alpha = number("loraAlpha", c.lora_alpha);
    auto targets = j.o.find("loraTargets");
    if (targets != j.o.end() && targets->second.kind == JValue::Array) {
        for (const JValue & t : targets->second.a) {
            auto name = t.o.find("name"), n_in = t.o.find("nIn"), n_out = t.o.find("nOut");
            if (t.kind != JValue::Object || name == t.o.end() || n_in == t.o.end() || n_out == t.o.end()) {
                throw std::runtime_error("config: loraTargets entries need name, nIn, nOut");
            }
            c.lora_targets.push_back({name->second.s, (int64_t) n_in->second.n, (int64_t) n_out->second.n});
        }
    }
    if (c.method == "lora" && c.lora_targets.empty()) throw std::runtime_error("config: method lora needs loraTargets");
    c.epochs = (int) number("epochs", c.epochs);
    c.learning_rate = number("learningRate", c.learning_rate);
    c.lr_schedule = str("lrSchedule", false);
    if (c.lr_schedule.empty()) c.lr_schedule = "constant";
    if (c.lr_schedule != "constant" && c.lr_schedule != "linear" && c.lr_schedule != "cosine") {
        throw std::runtime_error("config: lrSchedule must be constant, linear or cosine");
    }
    c.warmup_steps = (int64_t) number("warmupSteps", 0);
    c.weight_decay = number("weightDecay", 0.0);
    c.n_ctx = (int) number("nCtx", c.n_ctx);
    c.threads = (int) number("threads", c.threads);
    c.validation_split = number("validationSplit", c.validation_split);
    c.save_steps = (int64_t) number("saveSteps", 0);
    c.eval_steps = (int64_t) number("evalSteps", 0);
    c.gpu_layers = (int) number("gpuLayers", c.gpu_layers);
    c.seed = (uint32_t) number("seed", c.seed);
    auto special = j.o.find("parseSpecial");
    c.parse_special = special != j.o.end() && special->second.kind == JValue::Bool && special->second.b;
    if (c.epochs < 1) throw std::runtime_error("epochs must be >= 1");
    if (!(c.learning_rate > 0)) throw std::runtime_error("learningRate must be > 0");
    if (c.weight_decay < 0 || c.weight_decay > 1) throw std::runtime_error("weightDecay must be in [0, 1]");
    if (c.lora_rank < 1) throw std::runtime_error("loraRank must be >= 1");
    if (c.threads < 1) c.threads = 1;
    if (c.validation_split < 0 || c.validation_split >= 1) throw std::runtime_error("validationSplit must be in [0, 1)");
    // opt_init asserts n_ctx_train % n_batch == 0 and n_batch % n_ubatch == 0; llama.cpp pads n_ctx
    // to 256, so use multiples of 256 from the start.
    c.n_ctx = std::max(256, ((c.n_ctx + 255) / 256) * 256);
    return c;
}

// Saves the fully fine-tuned model with the base's metadata: llama.cpp's writer keeps only what it
// parsed, so tokenizer.chat_template and other keys would be lost; they are copied back from the base.
void save_model(llama_model * model, const std::string & base_path, const std::string & path) {
    const std::string raw = path + ".raw";
    const std::string partial = path + ".partial";
    llama_model_save_to_file(model, raw.c_str());
    ggml_context * data = nullptr;
    gguf_context * saved = gguf_init_from_file(raw.c_str(), { false, &data });
    gguf_context * base = gguf_init_from_file(base_path.c_str(), { true, nullptr });
    if (!saved || !base) throw std::runtime_error("cannot reopen " + raw + " to restore the base's metadata");
    gguf_context * out = gguf_init_empty();
    gguf_set_kv(out, base);
    // (the data context also holds gguf's own blob tensor: take the file's tensors by name)
    for (int64_t i = 0; i < gguf_get_n_tensors(saved); ++i) gguf_add_tensor(out, ggml_get_tensor(data, gguf_get_tensor_name(saved, i)));
    const bool ok = gguf_write_to_file(out, partial.c_str(), false);
    gguf_free(out);
    gguf_free(saved);
    gguf_free(base);
    ggml_free(data);
    std::remove(raw.c_str());
    if (!ok) throw std::runtime_error("cannot write " + partial);
    if (std::rename(partial.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + partial + " to " + path);
}

// ---------------------------------------------------------------- LoRA adapters
// The adapter is a llama.cpp LoRA GGUF (general.type "adapter", adapter.type "lora",
// adapter.lora.alpha, <weight>.lora_a / .lora_b, F32). It is written once with A ~ N(0, 1/sqrt(n_in))
// and B = 0 (so training starts from the base's own output), loaded by llama.cpp as any adapter,
// and its tensors are marked trainable; the base weights, whatever their type, stay frozen.

struct LoraData {
    std::vector<std::string> names;       // tensor names in file order
    std::vector<std::vector<float>> data; // same order
    std::vector<std::array<int64_t, 2>> shapes;
};

void write_adapter(const Config & cfg, const LoraData & lora, const std::string & path) {
    const size_t n = lora.names.size();
    ggml_init_params ip = { ggml_tensor_overhead() * (n + 1), nullptr, true };
    ggml_context * meta = ggml_init(ip);
    gguf_context * gguf = gguf_init_empty();
    gguf_set_val_str(gguf, "general.architecture", cfg.architecture.c_str());
    gguf_set_val_str(gguf, "general.type", "adapter");
    gguf_set_val_str(gguf, "adapter.type", "lora");
    gguf_set_val_f32(gguf, "adapter.lora.alpha", (float) cfg.lora_alpha);
    gguf_set_val_str(gguf, "training.method", "lora");
    gguf_set_val_u32(gguf, "training.lora.rank", (uint32_t) cfg.lora_rank);
    gguf_set_val_u64(gguf, "training.steps", (uint64_t) g_state.step);
    for (size_t i = 0; i < n; ++i) {
        ggml_tensor * t = ggml_new_tensor_2d(meta, GGML_TYPE_F32, lora.shapes[i][0], lora.shapes[i][1]);
        ggml_set_name(t, lora.names[i].c_str());
        t->data = const_cast<float *>(lora.data[i].data());
        gguf_add_tensor(gguf, t);
    }
    const std::string partial = path + ".partial";
    const bool ok = gguf_write_to_file(gguf, partial.c_str(), false);
    gguf_free(gguf);
    ggml_free(meta);
    if (!ok) throw std::runtime_error("cannot write " + partial);
    if (std::rename(partial.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + partial + " to " + path);
}

LoraData initial_adapter(const Config & cfg) {
    LoraData lora;
    std::mt19937 rng(cfg.seed);
    for (const LoraTarget & t : cfg.lora_targets) {
        std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt((float) t.n_in));
        std::vector<float> a((size_t) (t.n_in * cfg.lora_rank));
        for (float & v : a) v = normal(rng);
        lora.names.push_back(t.name + ".lora_a");
        lora.shapes.push_back({t.n_in, (int64_t) cfg.lora_rank});
        lora.data.push_back(std::move(a));
        lora.names.push_back(t.name + ".lora_b");
        lora.shapes.push_back({(int64_t) cfg.lora_rank, t.n_out});
        lora.data.push_back(std::vector<float>((size_t) (cfg.lora_rank * t.n_out), 0.0f));
    }
    return lora;
}

// Reads the trained values back from the backend (CPU or GPU memory) into file order.
LoraData read_adapter(const Config & cfg, llama_adapter_lora * adapter) {
    LoraData lora;
    for (const LoraTarget & t : cfg.lora_targets) {
        auto it = adapter->ab_map.find(t.name);
        if (it == adapter->ab_map.end()) throw std::runtime_error("the adapter lost its tensor " + t.name);
        for (ggml_tensor * x : {it->second.a, it->second.b}) {
            std::vector<float> buf((size_t) ggml_nelements(x));
            ggml_backend_tensor_get(x, buf.data(), 0, ggml_nbytes(x));
            lora.names.push_back(t.name + (x == it->second.a ? ".lora_a" : ".lora_b"));
            lora.shapes.push_back({x->ne[0], x->ne[1]});
            lora.data.push_back(std::move(buf));
        }
    }
    return lora;
}

bool no_base_params(const ggml_tensor *, void *) { return false; }

// Windows of n_ctx tokens (labels: the next token) starting at `starts`.
ggml_opt_dataset_t make_dataset(const std::vector<llama_token> & tokens, int64_t n_ctx, const std::vector<int64_t> & starts) {
    ggml_opt_dataset_t ds = ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, n_ctx, n_ctx, (int64_t) starts.size(), 1);
    llama_token * data = (llama_token *) ggml_opt_dataset_data(ds)->data;
    llama_token * labels = (llama_token *) ggml_opt_dataset_labels(ds)->data;
    for (size_t i = 0; i < starts.size(); ++i) {
        std::memcpy(data + i * n_ctx, tokens.data() + starts[i], n_ctx * sizeof(llama_token));
        std::memcpy(labels + i * n_ctx, tokens.data() + starts[i] + 1, n_ctx * sizeof(llama_token));
    }
    return ds;
}

int run(const Config & cfg) {
    const auto t0 = std::chrono::steady_clock::now();
    const bool lora_mode = cfg.method == "lora";
    llama_log_set(log_to_stderr, nullptr);
    // Trap 1: the CPU (and CUDA) backends are run-time-loaded variant libraries next to libggml.
    ggml_backend_load_all_from_path(cfg.backend_dir.c_str());
    if (ggml_backend_reg_count() == 0) throw std::runtime_error("no ggml backends could be loaded from " + cfg.backend_dir);
    llama_backend_init();

    llama_model_params mparams = llama_model_default_params();
    // Full fine-tuning writes the weights; LoRA never touches the base (read-only mmap is fine).
    if (!lora_mode) mparams.load_mode = LLAMA_LOAD_MODE_NONE;
    // Repacked ("extra" buffer type) quantized weights implement only MUL_MAT; the backward pass
    // needs OUT_PROD on them (Q4_0 aborts in the scheduler otherwise).
    mparams.use_extra_bufts = false;
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
    const int n_ubatch = (int) llama_n_ubatch(ctx);
    g_state.ubatch_per_step = std::max(1, n_ctx / std::max(1, n_ubatch));

    llama_adapter_lora * adapter = nullptr;
    int64_t trainable = 0;
    if (lora_mode) {
        const std::string init_path = cfg.output_path + ".init";
        std::string adapter_path = cfg.resume_from;
        if (adapter_path.empty()) {
            write_adapter(cfg, initial_adapter(cfg), init_path);
            adapter_path = init_path;
        }
        adapter = llama_adapter_lora_init(model, adapter_path.c_str());
        if (!adapter) throw std::runtime_error("llama.cpp refused the LoRA adapter " + adapter_path + " (see the job log)");
        if (adapter_path == init_path) std::remove(init_path.c_str());
        float scale = 1.0f;  // llama.cpp applies alpha / rank itself
        if (llama_set_adapters_lora(ctx, &adapter, 1, &scale) != 0) throw std::runtime_error("cannot attach the LoRA adapter");
        for (auto & kv : adapter->ab_map) {
            ggml_set_param(kv.second.a);
            ggml_set_param(kv.second.b);
            trainable += ggml_nelements(kv.second.a) + ggml_nelements(kv.second.b);
        }
    }

    const llama_vocab * vocab = llama_model_get_vocab(model);
    const std::string text = read_dataset(cfg.dataset_path);
    std::vector<llama_token> tokens(text.size() + 16);
    int n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(), (int32_t) tokens.size(), true, cfg.parse_special);
    if (n < 0) {
        tokens.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(), (int32_t) tokens.size(), true, cfg.parse_special);
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

    // Windows of n_ctx tokens every n_ctx/2; the last validationSplit of them are held out.
    std::vector<int64_t> starts;
    for (int64_t s = 0; s + n_ctx + 1 <= (int64_t) tokens.size(); s += stride) starts.push_back(s);
    const int64_t ndata = (int64_t) starts.size();
    int64_t idata_split = (int64_t) std::floor((double) ndata * (1.0 - cfg.validation_split));
    if (cfg.validation_split > 0 && idata_split >= ndata) idata_split = ndata - 1;
    if (idata_split < 1) idata_split = 1;
    const std::vector<int64_t> train_starts(starts.begin(), starts.begin() + idata_split);
    const std::vector<int64_t> val_starts(starts.begin() + idata_split, starts.end());

    llama_opt_params oparams{};
    oparams.n_ctx_train = 0;
    oparams.param_filter = lora_mode ? no_base_params : llama_opt_param_filter_all;
    oparams.param_filter_ud = nullptr;
    oparams.get_opt_pars = opt_params;
    oparams.get_opt_pars_ud = const_cast<Config *>(&cfg);
    oparams.optimizer_type = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    llama_opt_init(ctx, model, oparams);

    // Each window (n_ctx tokens) is one optimizer step (n_batch = n_ctx).
    g_state.cfg = &cfg;
    g_state.steps_per_epoch = idata_split;
    g_state.total_steps = idata_split * cfg.epochs;
    g_state.learning_rate = lr_at(cfg, 1, g_state.total_steps);
    const int64_t resume_step = std::min(cfg.resume_step, g_state.total_steps);
    Line("start").integer("totalSteps", g_state.total_steps).integer("stepsPerEpoch", g_state.steps_per_epoch)
        .integer("tokens", (int64_t) tokens.size()).integer("nCtx", n_ctx).integer("trainSamples", idata_split)
        .integer("valSamples", ndata - idata_split).integer("epochs", cfg.epochs).str("method", cfg.method)
        .integer("trainableParams", trainable).integer("resumeStep", resume_step).emit();

    auto save_checkpoint = [&](int64_t step) {
        if (cfg.checkpoint_dir.empty()) return;
        check_stop();
        const std::string path = cfg.checkpoint_dir + "/checkpoint-step-" + std::to_string(step) + ".gguf";
        if (lora_mode) write_adapter(cfg, read_adapter(cfg, adapter), path);
        else save_model(model, cfg.model_path, path);
        Line("checkpoint").integer("step", step).str("path", path).emit();
    };

    // Train in chunks of evalSteps (the validation windows are evaluated after each chunk) and
    // save a checkpoint every saveSteps, inside epochs too.
    ggml_opt_result_t result_train = ggml_opt_result_init();
    ggml_opt_result_t result_eval = ggml_opt_result_init();
    int64_t last_checkpoint = resume_step;
    g_state.step = resume_step;
    for (int e = 1; e <= cfg.epochs; ++e) {
        check_stop();
        g_state.epoch = e;
        const auto te = std::chrono::steady_clock::now();
        double loss_sum = 0, acc_sum = 0;
        int64_t loss_n = 0, done_in_epoch = 0;
        const int64_t epoch_base = (int64_t) (e - 1) * idata_split;
        // Resuming: skip the windows the checkpoint already trained on.
        int64_t from = std::max<int64_t>(0, std::min(idata_split, resume_step - epoch_base));
        while (from < idata_split) {
            // A chunk ends at the epoch's end, the next validation (every evalSteps) or the next
            // checkpoint (every saveSteps), all counted in global optimizer steps.
            int64_t to = idata_split;
            if (cfg.eval_steps > 0) to = std::min(to, (g_state.step / cfg.eval_steps + 1) * cfg.eval_steps - epoch_base);
            if (cfg.save_steps > 0) to = std::min(to, (g_state.step / cfg.save_steps + 1) * cfg.save_steps - epoch_base);
            const bool eval_now = to == idata_split || (cfg.eval_steps > 0 && (epoch_base + to) % cfg.eval_steps == 0);
            std::vector<int64_t> part(train_starts.begin() + from, train_starts.begin() + to);
            const size_t n_train = part.size();
            if (eval_now) part.insert(part.end(), val_starts.begin(), val_starts.end());
            ggml_opt_dataset_t dataset = make_dataset(tokens, n_ctx, part);
            g_state.chunk_base = epoch_base + from;
            g_state.val_loss = NAN;
            g_state.val_accuracy = NAN;
            llama_opt_epoch(ctx, dataset, result_train, result_eval, (int64_t) n_train, on_train_batch, on_train_batch);
            ggml_opt_dataset_free(dataset);
            double loss = NAN, unc = NAN, acc = NAN;
            ggml_opt_result_loss(result_train, &loss, &unc);
            ggml_opt_result_accuracy(result_train, &acc, &unc);
            if (std::isfinite(loss)) { loss_sum += loss * (double) n_train; acc_sum += acc * (double) n_train; loss_n += (int64_t) n_train; }
            done_in_epoch += (int64_t) n_train;
            ggml_opt_result_reset(result_train);
            ggml_opt_result_reset(result_eval);
            from = to;
            if (cfg.save_steps > 0 && g_state.step - last_checkpoint >= cfg.save_steps && g_state.step < g_state.total_steps) {
                save_checkpoint(g_state.step);
                last_checkpoint = g_state.step;
            }
        }
        if (done_in_epoch == 0) continue;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
        const double tokens_per_second = seconds > 0 ? (double) (done_in_epoch + (ndata - idata_split)) * n_ctx / seconds : 0.0;
        Line("epoch").integer("epoch", e).integer("step", g_state.step).integer("totalSteps", g_state.total_steps)
            .num("loss", loss_n > 0 ? loss_sum / loss_n : NAN).num("accuracy", loss_n > 0 ? acc_sum / loss_n : NAN)
            .num("valLoss", g_state.val_loss).num("valAccuracy", g_state.val_accuracy).num("seconds", seconds)
            .num("tokensPerSecond", tokens_per_second).num("learningRate", g_state.learning_rate).emit();
    }
    ggml_opt_result_free(result_train);
    ggml_opt_result_free(result_eval);
    check_stop();
    if (lora_mode) write_adapter(cfg, read_adapter(cfg, adapter), cfg.output_path);
    else save_model(model, cfg.model_path, cfg.output_path);
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
    // The console runs the trainer in its own process group; should the console die (kill -9), the
    // kernel sends SIGTERM here, so no trainer outlives it.
    const pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) g_stop = 1;
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
