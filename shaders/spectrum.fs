/*{
    "DESCRIPTION": "Audio visualiser over the picture: the log-frequency spectrum as bars along the bottom and the waveform as a line. Reads the engine's ISF audioFFT and audio images, so it also shows how a community ISF audio shader gets its sound.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Audio Visualizer", "Generator"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "fft", "TYPE": "audioFFT", "MAX": 128},
        {"NAME": "wave", "TYPE": "audio", "MAX": 512},
        {"NAME": "height", "LABEL": "Bar height", "TYPE": "float", "DEFAULT": 0.35, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "wave_level", "LABEL": "Waveform opacity", "TYPE": "float", "DEFAULT": 0.8, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "opacity", "LABEL": "Bar opacity", "TYPE": "float", "DEFAULT": 0.7, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "tint", "LABEL": "Colour", "TYPE": "color", "DEFAULT": [1.0, 1.0, 1.0, 1.0]}
    ]
}*/

void main() {
    vec2 uv = isf_FragNormCoord;
    vec3 c = IMG_NORM_PIXEL(inputImage, uv).rgb;
    float level = IMG_NORM_PIXEL(fft, vec2(uv.x, 0.5)).r;
    float bar = step(uv.y, level * height);
    c = mix(c, tint.rgb, bar * opacity);
    // waveform: 0.5 is silence; draw a line two pixels thick around the sample's height
    float s = IMG_NORM_PIXEL(wave, vec2(uv.x, 0.5)).r;
    float px = 1.0 / max(RENDERSIZE.y, 1.0);
    float line = 1.0 - smoothstep(px, 2.0 * px, abs(uv.y - s));
    c = mix(c, tint.rgb, line * wave_level);
    gl_FragColor = vec4(c, 1.0);
}
