/*{
    "DESCRIPTION": "Neon edges: where the picture's brightness changes sharply, a coloured glow is added (hue picks the colour, white at saturation 0). background dims the picture under the edges so they pop. Flat areas are left unchanged at background 1. Five texture taps.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Stylize", "Edge"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.8, "MIN": 0.0, "MAX": 2.0},
        {"NAME": "threshold", "LABEL": "Threshold", "TYPE": "float", "DEFAULT": 0.1, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "hue", "LABEL": "Hue (turns)", "TYPE": "float", "DEFAULT": 0.55, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "saturation", "LABEL": "Saturation", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "background", "LABEL": "Background", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 1.0}
    ]
}*/

const vec3 LUMA = vec3(0.2126, 0.7152, 0.0722);
// Edges are measured across 1.5 pixels diagonally (thick enough to glow, still crisp).
const float WIDTH = 1.5;

// Fully saturated colour of hue h (turns): piecewise-linear RGB wheel.
vec3 hueColour(float h) {
    vec3 k = abs(fract(h + vec3(0.0, 2.0 / 3.0, 1.0 / 3.0)) * 6.0 - 3.0);
    return clamp(k - 1.0, 0.0, 1.0);
}

void main() {
    vec2 uv = isf_FragNormCoord;
    vec2 d = WIDTH / RENDERSIZE;
    vec3 c = IMG_NORM_PIXEL(inputImage, uv).rgb;
    float tl = dot(IMG_NORM_PIXEL(inputImage, uv + vec2(-d.x, d.y)).rgb, LUMA);
    float tr = dot(IMG_NORM_PIXEL(inputImage, uv + d).rgb, LUMA);
    float bl = dot(IMG_NORM_PIXEL(inputImage, uv - d).rgb, LUMA);
    float br = dot(IMG_NORM_PIXEL(inputImage, uv + vec2(d.x, -d.y)).rgb, LUMA);
    vec2 g = vec2((tr + br) - (tl + bl), (tl + tr) - (bl + br)) * 0.5;
    float e = smoothstep(threshold, threshold + 0.15, length(g));
    vec3 glow = mix(vec3(1.0), hueColour(hue), saturation);
    gl_FragColor = vec4(clamp(c * background + glow * e * amount, 0.0, 1.0), 1.0);
}
