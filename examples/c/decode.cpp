// decode.cpp: decode.c in C++ with the RAII wrappers of edgesdk.hpp: stream a file or stdin into
// a session chunk by chunk, print the answer at each new level (one JSON object per line), and
// stop reading once the bundle's controller trusts the answer. Handles are freed by destructors,
// on every path, errors included.
//
//   edge-sdk c-lib --out sdk
//   c++ -std=c++17 examples/c/decode.cpp $(PKG_CONFIG_PATH=sdk pkg-config --cflags --libs edgesdk) -o decode_cpp
//   ./decode_cpp BUNDLE_DIR [STREAM|-] [--chunk BYTES] [--top K] [--threshold T] [--threads N] [--ppm PATH]
#include "edgesdk.hpp"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

std::string json_string(const std::string &text)
{
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

void print_answer(const edgesdk::Session &session, size_t k, bool has_controller, const char *stopped)
{
    auto top = session.classify(k);
    std::printf("{\"level\": %d, \"levels\": %d, \"bytes_used\": %llu, \"bytes_received\": %llu, \"top\": [",
                session.level(), session.num_levels(), static_cast<unsigned long long>(session.bytes_used()),
                static_cast<unsigned long long>(session.bytes_received()));
    for (size_t i = 0; i < top.size(); i++)
        std::printf("%s{\"index\": %d, \"name\": %s, \"prob\": %.9g}", i ? ", " : "", top[i].index,
                    json_string(top[i].name).c_str(), top[i].probability);
    std::printf("]");
    if (has_controller)
        std::printf(", \"confidence\": %.17g", session.confidence());
    if (stopped)
        std::printf(", \"final\": true, \"stopped\": \"%s\"", stopped);
    std::printf("}\n");
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char **argv)
{
    std::string bundle, input = "-", ppm, device = "auto";
    size_t chunk = 4096, k = 3;
    double threshold = EDGESDK_DEFAULT_THRESHOLD;
    int threads = 0, positional = 0;
    bool usage = false;
    for (int i = 1; i < argc && !usage; i++) {
        std::string arg = argv[i];
        bool has_value = i + 1 < argc;
        if (arg == "--chunk" && has_value) chunk = std::stoull(argv[++i]);
        else if (arg == "--top" && has_value) k = std::stoull(argv[++i]);
        else if (arg == "--threshold" && has_value) threshold = std::stod(argv[++i]);
        else if (arg == "--threads" && has_value) threads = std::stoi(argv[++i]);
        else if (arg == "--device" && has_value) device = argv[++i];
        else if (arg == "--ppm" && has_value) ppm = argv[++i];
        else if (positional < 2 && (arg[0] != '-' || arg == "-")) (positional++ == 0 ? bundle : input) = arg;
        else usage = true;
    }
    if (usage || bundle.empty() || chunk == 0 || k == 0) {
        std::cerr << "usage: " << argv[0] << " BUNDLE_DIR [STREAM|-] [--chunk BYTES] [--top K] [--threshold T] "
                  << "[--threads N] [--device auto|cpu|cuda] [--ppm PATH]\n";
        return 1;
    }
    std::ifstream file;
    if (input != "-") {
        file.open(input, std::ios::binary);
        if (!file) {
            std::perror(input.c_str());
            return 1;
        }
    }
    std::istream &in = input == "-" ? std::cin : file;

    try {
        edgesdk::Decoder decoder(bundle, threads, device);
        const bool has_controller = decoder.has_controller();
        edgesdk::Session session = decoder.session();
        std::vector<char> buffer(chunk);
        int32_t shown = -1;
        const char *stopped = "end of stream";
        while (in) {
            in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
            const auto n = static_cast<size_t>(in.gcount());
            if (n == 0)
                break;
            const int32_t level = session.feed(reinterpret_cast<const uint8_t *>(buffer.data()), n);
            if (!session.ready() || level == shown)
                continue;
            shown = level;
            if (has_controller && session.confident(threshold)) {
                stopped = "confident";  // the answer is trusted: the rest of the stream is never read
                break;
            }
            print_answer(session, k, has_controller, nullptr);
        }
        if (in.bad()) {
            std::perror(input.c_str());
            return 1;
        }
        print_answer(session, k, has_controller, stopped);  // before the header: the library's "not ready" error
        if (!ppm.empty()) {
            uint32_t width = 0, height = 0;
            const std::vector<uint8_t> pixels = session.reconstruct(width, height);
            std::ofstream out(ppm, std::ios::binary);
            out << "P6\n" << width << ' ' << height << "\n255\n";
            out.write(reinterpret_cast<const char *>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
            if (!out) {
                std::perror(ppm.c_str());
                return 1;
            }
        }
    } catch (const edgesdk::Error &error) {
        std::cerr << "error: " << error.what() << "\n";
        return 2;
    }
    return 0;
}
