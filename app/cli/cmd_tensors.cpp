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

struct TensorsComponent {
    std::string name;
    std::string summary;  // inputs -> outputs, shown in --help
    bool uses_inputs;     // false: reads --prompts instead of --inputs
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

const std::vector<TensorsComponent>& components() {
    static const std::vector<TensorsComponent> list = {
        {"tokenizer", "--prompts FILE.json (array of strings); out input_ids, attention_mask (I64 [P,77])", false,
         run_tokenizer},
        {"text_encoder", "in input_ids (I64 [B,77]); out last_hidden_state [B,77,H], pooler_output [B,H]", true,
         run_text_encoder},
        {"unet", "in sample [B,C,H,W], timestep (I64 or F32, [1] or [B]), encoder_hidden_states [B,77,D]; out out",
         true, run_unet},
        {"vae_encode", "in image [B,3,H,W] in [-1,1]; out latent_dist.mean, latent_dist.logvar (unscaled)", true,
         run_vae_encode},
        {"vae_decode", "in latents [B,4,h,w] (unscaled); out decoded [B,3,H,W]", true, run_vae_decode},
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
    if (!fs::is_directory(r.model_dir)) throw Error(r.model_dir + ": no such model folder (--model)");
    if (c->uses_inputs) {
        if (r.inputs_path.empty()) throw Error("component '" + component + "' needs --inputs FILE.safetensors");
        r.inputs = load_safetensors(r.inputs_path);
    } else if (r.prompts_path.empty()) {
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
                          sub.add_option("--model", r->model_dir, "Diffusers model folder")->required();
                          sub.add_option("--component", *component, help)->required();
                          sub.add_option("--inputs", r->inputs_path, "Input tensors (.safetensors)");
                          sub.add_option("--prompts", r->prompts_path, "JSON array of prompts (tokenizer)");
                          sub.add_option("--out", r->out_path, "Output file (.safetensors)")->required();
                          sub.add_option("--unet", r->unet_dir, "UNet folder used instead of <model>/unet");
                          sub.add_option("--lora", r->lora_path, "LoRA weights (.safetensors) applied to the UNet");
                          sub.add_option("--device", r->device, "cpu (default), cuda or cuda:N");
                          return [r, component] { return run_tensors(*r, *component); };
                      }}};

}  // namespace
}  // namespace kto::cli
