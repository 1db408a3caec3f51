/*{
    "DESCRIPTION": "Chromatic aberration: red and blue pull apart along a direction, with a soft spectral spread between them.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Color", "Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.15, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "angle", "LABEL": "Angle (turns)", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0}
    ]
}*/

// amount 1.0 moves red and blue by 4 % of the frame height each way.
const float MAX_SHIFT = 0.04;
const int TAPS = 7;

void main() {
    vec2 uv = isf_FragNormCoord;
    float aspect = RENDERSIZE.x / max(RENDERSIZE.y, 1.0);
    float a = angle * 6.28318530718;
    vec2 dir = vec2(cos(a) / aspect, sin(a)) * amount * MAX_SHIFT;

    vec3 sum = vec3(0.0);
    vec3 weight = vec3(0.0);
    for (int i = 0; i < TAPS; i++) {
        float t = float(i) / float(TAPS - 1);            // 0 = red end, 1 = blue end
        vec3 w = clamp(vec3(1.0 - 2.0 * t, 1.0 - abs(2.0 * t - 1.0), 2.0 * t - 1.0), 0.0, 1.0);
        vec3 c = IMG_NORM_PIXEL(inputImage, uv + dir * (1.0 - 2.0 * t)).rgb;
        sum += c * w;
        weight += w;
    }
    gl_FragColor = vec4(sum / weight, 1.0);
}
