// edgesdk.hpp: RAII wrappers over edge_sdk.h for C++17. Copy it into your project.
//
// Each handle type owns its C handle and frees it in its destructor (move-only); every failed
// call throws edgesdk::Error carrying the status and the library's message.
#pragma once

#include <edge_sdk.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edgesdk {

class Error : public std::runtime_error {
public:
    Error(edgesdk_status status, const std::string &what)
        : std::runtime_error(what + ": " + edgesdk_status_name(status) + ": " + edgesdk_last_error()),
          status_(status) {}
    edgesdk_status status() const { return status_; }

private:
    edgesdk_status status_;
};

inline void check(edgesdk_status status, const char *what)
{
    if (status != EDGESDK_OK)
        throw Error(status, what);
}

// The owning pointer of a C handle; Free is the library's *_free function.
template <typename T, edgesdk_status (*Free)(T *)>
struct Deleter {
    void operator()(T *handle) const { Free(handle); }  // a status from *_free has nowhere to go in a destructor
};

struct ClassScore {
    int32_t index;
    std::string name;
    float probability;
};

class Session {
public:
    // Feed the next bytes (any split); returns the level now decodable.
    int32_t feed(const uint8_t *data, size_t size)
    {
        int32_t level = 0;
        check(edgesdk_session_feed(handle_.get(), data, size, &level), "feed");
        return level;
    }
    bool ready() const { return flag(edgesdk_session_is_ready, "is_ready"); }
    bool complete() const { return flag(edgesdk_session_is_complete, "is_complete"); }
    int32_t level() const { return get<int32_t>(edgesdk_session_level, "level"); }
    int32_t num_levels() const { return get<int32_t>(edgesdk_session_num_levels, "num_levels"); }
    uint64_t bytes_used() const { return get<uint64_t>(edgesdk_session_bytes_used, "bytes_used"); }
    uint64_t bytes_received() const { return get<uint64_t>(edgesdk_session_bytes_received, "bytes_received"); }
    double confidence() const { return get<double>(edgesdk_session_confidence, "confidence"); }
    bool confident(double threshold = EDGESDK_DEFAULT_THRESHOLD) const
    {
        int yes = 0;
        check(edgesdk_session_confident(handle_.get(), threshold, &yes), "confident");
        return yes != 0;
    }
    std::vector<ClassScore> classify(size_t k = 5) const
    {
        std::vector<int32_t> indices(k);
        std::vector<float> probabilities(k);
        std::vector<const char *> names(k);
        size_t count = 0;
        check(edgesdk_session_classify(handle_.get(), k, indices.data(), probabilities.data(), names.data(), &count),
              "classify");
        std::vector<ClassScore> out;
        for (size_t i = 0; i < count; i++)
            out.push_back({indices[i], names[i], probabilities[i]});
        return out;
    }
    // The image at the current level: RGB8, row-major; width and height are set too.
    std::vector<uint8_t> reconstruct(uint32_t &width, uint32_t &height) const
    {
        size_t size = 0;
        check(edgesdk_session_image_size(handle_.get(), &width, &height, &size), "image_size");
        std::vector<uint8_t> pixels(size);
        check(edgesdk_session_reconstruct_rgb8(handle_.get(), pixels.data(), pixels.size()), "reconstruct");
        return pixels;
    }

private:
    friend class Decoder;
    explicit Session(edgesdk_session *handle) : handle_(handle) {}
    template <typename V>
    V get(edgesdk_status (*fn)(edgesdk_session *, V *), const char *what) const
    {
        V value{};
        check(fn(handle_.get(), &value), what);
        return value;
    }
    bool flag(edgesdk_status (*fn)(edgesdk_session *, int *), const char *what) const { return get<int>(fn, what) != 0; }
    std::unique_ptr<edgesdk_session, Deleter<edgesdk_session, edgesdk_session_free>> handle_;
};

class Decoder {
public:
    explicit Decoder(const std::string &bundle_dir, int threads = 0, const std::string &device = "auto")
    {
        edgesdk_decoder_options options;
        edgesdk_decoder_options_init(&options);
        options.threads = threads;
        options.device = device.c_str();
        edgesdk_decoder *raw = nullptr;
        check(edgesdk_decoder_open(bundle_dir.c_str(), &options, &raw), "open the bundle");
        handle_.reset(raw);
    }
    Session session()
    {
        edgesdk_session *raw = nullptr;
        check(edgesdk_session_create(handle_.get(), &raw), "create a session");
        return Session(raw);
    }
    bool has_controller() const
    {
        int has = 0;
        check(edgesdk_decoder_has_controller(handle_.get(), &has), "has_controller");
        return has != 0;
    }

private:
    std::unique_ptr<edgesdk_decoder, Deleter<edgesdk_decoder, edgesdk_decoder_free>> handle_;
};

class Encoder {
public:
    explicit Encoder(const std::string &bundle_dir, int threads = 0)
    {
        edgesdk_encoder_options options;
        edgesdk_encoder_options_init(&options);
        options.threads = threads;
        edgesdk_encoder *raw = nullptr;
        check(edgesdk_encoder_open(bundle_dir.c_str(), &options, &raw), "open the bundle");
        handle_.reset(raw);
    }
    // The progressive stream of an RGB8 image (rows of width * 3 bytes).
    std::vector<uint8_t> encode(const uint8_t *pixels, uint32_t width, uint32_t height) const
    {
        uint8_t *data = nullptr;
        size_t size = 0;
        check(edgesdk_encode_rgb8(handle_.get(), pixels, width, height, 0, &data, &size), "encode");
        std::unique_ptr<uint8_t, void (*)(uint8_t *)> owned(data, edgesdk_buffer_free);
        return std::vector<uint8_t>(data, data + size);
    }

private:
    std::unique_ptr<edgesdk_encoder, Deleter<edgesdk_encoder, edgesdk_encoder_free>> handle_;
};

}  // namespace edgesdk
