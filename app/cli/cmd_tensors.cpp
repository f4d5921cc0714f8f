// `kto-studio-cli tensors`: runs one model component on stored inputs and writes its outputs, so any
// reference implementation can be held against ours (tensor names fixed by issue 3).
//
// Adding a component = adding one entry to components() below.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "app/cli/command.h"
#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/nn/lora.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "core/pipeline/pipeline.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/text/clip_text_model.h"
#include "core/text/clip_tokenizer.h"

namespace fs = std::filesystem;

namespace kto::cli {
namespace {

struct TensorsRequest {
    std::string model_dir;    // diffusers folder (--model)
    std::string unet_dir;     // --unet: a UNet folder replacing <model>/unet
    std::string lora_path;    // --lora: LoRA weights applied to the UNet
    std::string inputs_path;  // --inputs
    std::string prompts_path; // --prompts (tokenizer)
    std::string out_path;     // --out
    std::string device = "cpu";
    std::string scheduler_config_path;  // --scheduler-config (scheduler)
    std::string sampler;                // --sampler (scheduler, pipeline)
    int steps = 0;                      // --steps (scheduler, pipeline)
    double cfg = 7.5;                   // --cfg (pipeline)
    std::vector<std::string> prompts;   // --prompt (pipeline), one per batch row
    std::vector<std::string> negatives; // --negative (pipeline)
    TensorMap inputs;

    std::string component_dir(const std::string& name) const { return (fs::path(model_dir) / name).string(); }
    torch::Device torch_device() const {
        try {
            return torch::Device(device);
        } catch (const std::exception&) {
            throw Error("--device: unknown device '" + device + "' (use cpu, cuda or cuda:N)");
        }
    }

    // The named input, or an error naming the file and the tensor.
    torch::Tensor input(const std::string& name) const {
        auto it = inputs.find(name);
        if (it == inputs.end()) {
            std::string have;
            for (const auto& [k, v] : inputs) have += (have.empty() ? "" : ", ") + k;
            throw Error(inputs_path + ": missing input tensor '" + name + "' (file holds: " +
                        (have.empty() ? "nothing" : have) + ")");
        }
        return it->second;
    }
    torch::Tensor float_input(const std::string& name) const {
        auto t = input(name);
        if (!t.is_floating_point()) throw Error(inputs_path + ": input '" + name + "' must be a floating-point tensor");
        return t.to(torch_device(), torch::kFloat32);
    }
};

enum class InputKind { tensors, prompts_file, none };

struct TensorsComponent {
    std::string name;
    std::string summary;  // inputs -> outputs, shown in --help
    InputKind input;      // tensors: --inputs; prompts_file: --prompts; none: options only
    bool needs_model;     // false: --model is not read (scheduler)
    std::function<TensorMap(const TensorsRequest&)> run;
};

TensorMap run_tokenizer(const TensorsRequest& r) {
    nlohmann::json prompts;
    {
        std::ifstream in(r.prompts_path, std::ios::binary);
        if (!in) throw Error(r.prompts_path + ": cannot open (--prompts)");
        try {
            prompts = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
            throw Error(r.prompts_path + ": not valid JSON (" + e.what() + ")");
        }
    }
    if (!prompts.is_array()) throw Error(r.prompts_path + ": expected a JSON array of strings");
    std::vector<std::string> list;
    for (const auto& p : prompts) {
        if (!p.is_string()) throw Error(r.prompts_path + ": expected a JSON array of strings, found " + p.dump());
        list.push_back(p.get<std::string>());
    }
    const auto tokenizer = CLIPTokenizer::from_folder(r.component_dir("tokenizer"));
    auto tok = tokenizer.encode(list);
    return {{"input_ids", tok.input_ids}, {"attention_mask", tok.attention_mask}};
}

TensorMap run_text_encoder(const TensorsRequest& r) {
    auto te = load_text_encoder(r.component_dir("text_encoder"), r.torch_device(), torch::kFloat32);
    auto ids = r.input("input_ids");
    if (ids.is_floating_point() || ids.dim() != 2)
        throw Error(r.inputs_path + ": input 'input_ids' must be an integer tensor [B,77]");
    torch::NoGradGuard ng;
    auto out = te->forward(ids.to(r.torch_device(), torch::kInt64));
    return {{"last_hidden_state", out.last_hidden_state}, {"pooler_output", out.pooler_output}};
}

TensorMap run_unet(const TensorsRequest& r) {
    const auto dir = r.unet_dir.empty() ? r.component_dir("unet") : r.unet_dir;
    auto unet = load_unet(dir, r.torch_device(), torch::kFloat32);
    std::unique_ptr<UNetLoRA> lora;
    if (!r.lora_path.empty()) lora = UNetLoRA::load(unet, r.lora_path);
    torch::NoGradGuard ng;
    auto t = r.input("timestep").to(r.torch_device());
    auto out = unet->forward(r.float_input("sample"), t, r.float_input("encoder_hidden_states"));
    return {{"out", out}};
}

TensorMap run_vae_encode(const TensorsRequest& r) {
    auto vae = load_vae(r.component_dir("vae"), r.torch_device(), torch::kFloat32);
    torch::NoGradGuard ng;
    auto dist = vae->encode(r.float_input("image"));
    return {{"latent_dist.mean", dist.mean}, {"latent_dist.logvar", dist.logvar}};
}

TensorMap run_vae_decode(const TensorsRequest& r) {
    auto vae = load_vae(r.component_dir("vae"), r.torch_device(), torch::kFloat32);
    torch::NoGradGuard ng;
    return {{"decoded", vae->decode(r.float_input("latents"))}};
}

TensorMap run_scheduler(const TensorsRequest& r) {
    if (r.scheduler_config_path.empty()) throw Error("component 'scheduler' needs --scheduler-config FILE.json");
    if (r.sampler.empty()) throw Error("component 'scheduler' needs --sampler NAME");
    if (r.steps <= 0) throw Error("component 'scheduler' needs --steps N (N >= 1)");
    auto sched = make_scheduler(r.sampler, SchedulerConfig::from_file(r.scheduler_config_path));
    sched->set_timesteps(r.steps);
    TensorMap out{{"timesteps", sched->timesteps().clone()},
                  {"init_noise_sigma", torch::tensor({float(sched->init_noise_sigma())})}};
    if (sched->sigmas().defined() && sched->sigmas().numel() > 0) out["sigmas"] = sched->sigmas().clone();
    return out;
}

TensorMap run_pipeline(const TensorsRequest& r) {
    if (r.prompts.empty()) throw Error("component 'pipeline' needs --prompt TEXT (repeat for several rows)");
    if (r.steps <= 0) throw Error("component 'pipeline' needs --steps N (N >= 1)");
    if (!r.negatives.empty() && r.negatives.size() != r.prompts.size() && r.negatives.size() != 1)
        throw Error("component 'pipeline': give one --negative, or one per --prompt (" +
                    std::to_string(r.prompts.size()) + ")");
    ModelBundleOptions mo;
    mo.device = r.torch_device();
    mo.unet_dir = r.unet_dir;
    mo.lora_path = r.lora_path;
    ModelBundle bundle = ModelBundle::load(r.model_dir, mo);
    const torch::Tensor init = r.float_input("init_latents");
    if (init.dim() != 4 || init.size(0) != int64_t(r.prompts.size()))
        throw Error(r.inputs_path + ": input 'init_latents' must be [B,4,h,w] with B = the number of --prompt (" +
                    std::to_string(r.prompts.size()) + ")");
    GenerateOptions g;
    g.prompts = r.prompts;
    g.negative_prompts = r.negatives;
    g.steps = r.steps;
    g.cfg = r.cfg;
    g.sampler = r.sampler;
    g.height = int(init.size(2)) * bundle.vae_scale_factor();
    g.width = int(init.size(3)) * bundle.vae_scale_factor();
    g.init_latents = init.cpu();
    g.on_warning = [](const std::string& w) { std::cerr << "warning: " << w << "\n"; };
    GenerateResult res = generate(bundle, g);
    return {{"latents", res.latents}, {"image", res.images}};
}

const std::vector<TensorsComponent>& components() {
    static const std::vector<TensorsComponent> list = {
        {"tokenizer", "--prompts FILE.json (array of strings); out input_ids, attention_mask (I64 [P,77])",
         InputKind::prompts_file, true, run_tokenizer},
        {"text_encoder", "in input_ids (I64 [B,77]); out last_hidden_state [B,77,H], pooler_output [B,H]",
         InputKind::tensors, true, run_text_encoder},
        {"unet", "in sample [B,C,H,W], timestep (I64 or F32, [1] or [B]), encoder_hidden_states [B,77,D]; out out",
         InputKind::tensors, true, run_unet},
        {"vae_encode", "in image [B,3,H,W] in [-1,1]; out latent_dist.mean, latent_dist.logvar (unscaled)",
         InputKind::tensors, true, run_vae_encode},
        {"vae_decode", "in latents [B,4,h,w] (unscaled); out decoded [B,3,H,W]", InputKind::tensors, true,
         run_vae_decode},
        {"scheduler",
         "--scheduler-config FILE.json --sampler NAME --steps N (no --model, no --inputs); out timesteps (I64, or "
         "F32 for float-timestep schedulers), init_noise_sigma [1], sigmas (where the scheduler has them)",
         InputKind::none, false, run_scheduler},
        {"pipeline",
         "--prompt TEXT [--negative TEXT] (repeatable, one per row) --steps N --cfg X --sampler NAME; in "
         "init_latents [B,4,h,w] (before init_noise_sigma); out latents (final, unscaled), image [B,3,H,W] in [0,1]",
         InputKind::tensors, true, run_pipeline},
    };
    return list;
}

int run_tensors(TensorsRequest r, const std::string& component) {
    const TensorsComponent* c = nullptr;
    for (const auto& e : components())
        if (e.name == component) c = &e;
    if (!c) {
        std::string names;
        for (const auto& e : components()) names += (names.empty() ? "" : ", ") + e.name;
        throw Error("--component: unknown component '" + component + "' (one of: " + names + ")");
    }
    if (c->needs_model) {
        if (r.model_dir.empty()) throw Error("component '" + component + "' needs --model DIR");
        if (!fs::is_directory(r.model_dir)) throw Error(r.model_dir + ": no such model folder (--model)");
    }
    if (c->input == InputKind::tensors) {
        if (r.inputs_path.empty()) throw Error("component '" + component + "' needs --inputs FILE.safetensors");
        r.inputs = load_safetensors(r.inputs_path);
    } else if (c->input == InputKind::prompts_file && r.prompts_path.empty()) {
        throw Error("component '" + component + "' needs --prompts FILE.json");
    }
    TensorMap out = c->run(r);
    for (auto& [name, t] : out) {
        t = t.detach().to(torch::kCPU);
        t = t.is_floating_point() ? t.to(torch::kFloat32) : t.to(torch::kInt64);
        t = t.contiguous();
    }
    write_safetensors(r.out_path, out, {{"component", component}, {"producer", "kto-studio-cli " KTO_VERSION}});
    std::cout << "wrote " << out.size() << " tensor(s) to " << r.out_path << "\n";
    return 0;
}

CommandRegistrar reg{{"tensors", "Run one model component on stored inputs and write its outputs (parity checks)",
                      [](CLI::App& sub) -> std::function<int()> {
                          auto r = std::make_shared<TensorsRequest>();
                          auto component = std::make_shared<std::string>();
                          std::string help = "Component to run:";
                          for (const auto& e : components()) help += "\n  " + e.name + ": " + e.summary;
                          sub.add_option("--model", r->model_dir,
                                         "Diffusers model folder (every component but scheduler)");
                          sub.add_option("--component", *component, help)->required();
                          sub.add_option("--inputs", r->inputs_path, "Input tensors (.safetensors)");
                          sub.add_option("--prompts", r->prompts_path, "JSON array of prompts (tokenizer)");
                          sub.add_option("--out", r->out_path, "Output file (.safetensors)")->required();
                          sub.add_option("--unet", r->unet_dir, "UNet folder used instead of <model>/unet");
                          sub.add_option("--lora", r->lora_path, "LoRA weights (.safetensors) applied to the UNet");
                          sub.add_option("--device", r->device, "cpu (default), cuda or cuda:N");
                          sub.add_option("--scheduler-config", r->scheduler_config_path,
                                         "scheduler_config.json (scheduler)");
                          sub.add_option("--sampler", r->sampler,
                                         "Sampler name (scheduler, pipeline): ddim, pndm, euler, euler_karras, "
                                         "euler_ancestral, dpmpp_2m, dpmpp_2m_karras, ddpm");
                          sub.add_option("--steps", r->steps, "Inference steps (scheduler, pipeline)");
                          sub.add_option("--cfg", r->cfg, "Guidance scale (pipeline)")->capture_default_str();
                          sub.add_option("--prompt", r->prompts, "Prompt, one per batch row (pipeline)");
                          sub.add_option("--negative", r->negatives, "Negative prompt, one or one per row (pipeline)");
                          return [r, component] { return run_tensors(*r, *component); };
                      }}};

}  // namespace
}  // namespace kto::cli
